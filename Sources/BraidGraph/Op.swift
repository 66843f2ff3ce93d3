import BraidTensor

/// The operations of Braid's IR.
///
/// Names and fields are Braid's own: importers translate foreign ops into these, resolving
/// attribute defaults and version quirks so that an `Op` value means one thing. Operands that
/// ONNX passes as tensors (a Reshape's target shape, a Slice's bounds, a Pad's widths, a
/// Resize's scales) stay node inputs here; the planner evaluates them when they are known
/// before the run (constants, or values computed from input shapes).
public enum Op: Sendable {
    // MARK: Element-wise (Math family)
    /// One input, one output of the same shape.
    case unary(UnaryFunction)
    /// Two inputs broadcast NumPy-style.
    case binary(BinaryFunction)
    /// Any number of inputs broadcast together, folded with `kind` (`.mean` divides by count).
    case variadic(VariadicOp)
    /// `[cond, x, y]` broadcast: cond ? x : y.
    case select
    /// `[x, min?, max?]`; missing bounds are empty input names.
    case clip
    /// `[x, slope]`, slope broadcast to x (unidirectional).
    case prelu
    /// Element type conversion.
    case cast(to: DType)
    /// `[x, like]`: x converted to like's element type (like's elements are not read).
    case castLike
    /// Each element's bits, laid out as `from`, read back as `to` (same width).
    case reinterpretBits(from: BitLayout, to: BitLayout)

    // MARK: Neural-network family
    /// `[x, w, b?]`, x `[N, C, spatial...]`, w `[M, C/group, kernel...]`; 1-D and 2-D spatial.
    case conv(ConvParams)
    /// `[x, w, b?]`, w `[C, M/group, kernel...]`.
    case convTranspose(ConvTransposeParams)
    /// `[a, b, c?]`: alpha * op(a) * op(b) + beta * c, a and b 2-D, c broadcast to the result.
    case gemm(transA: Bool, transB: Bool, alpha: Float, beta: Float)
    /// `[a, b]` with NumPy matmul semantics (1-D promotion, batch broadcast).
    case matMul
    /// `[x, scale, bias, mean, var]` in inference form; channel axis 1.
    case batchNorm(epsilon: Float)
    /// `[x, scale, bias]` per-channel instance normalisation.
    case instanceNorm(epsilon: Float)
    /// `[x, operands...]`: `steps` applied in order along channel axis 1 (a batch
    /// normalisation takes its four parameters, a binary step one operand), then `activation`:
    /// one pass over the data. Made by `Passes.fuseChannelChains` for running only; exporters
    /// and training reject it.
    case channelChain(steps: [ChannelStep], activation: ConvActivation?)
    /// `[x, scale, bias?]` normalising over the axes from `axis` to the end.
    case layerNorm(axis: Int, epsilon: Float)
    case pool(PoolParams)
    /// Global average or max over all spatial axes, keeping them as size 1.
    case globalPool(PoolKind)
    /// Local response normalisation across channels.
    case lrn(size: Int, alpha: Float, beta: Float, bias: Float)
    /// Softmax, log-softmax or hardmax over one axis (`coerce2D`: the opset < 13 rule that
    /// flattens to `[prod(shape[..<axis]), prod(shape[axis...])]`).
    case softmax(SoftmaxMode, axis: Int, coerce2D: Bool)
    /// Identity at inference (outputs `[y, mask?]`).
    case dropout
    /// Training-mode batch normalisation: `[x, scale, bias, runningMean, runningVar]` ->
    /// `[y, batchMean, batchInvStd]` using the batch's statistics (biased variance), and
    /// updating the running statistics in place as
    /// `running = (1 - momentum) * running + momentum * batch` (unbiased variance for the
    /// running one, PyTorch's rule).
    case batchNormTraining(epsilon: Float, momentum: Float)
    /// Training-mode dropout: `[x]` -> `[y, mask]`, `y = x * mask / (1 - ratio)` with a fresh
    /// Bernoulli mask (float 0/1) drawn each run from a generator seeded with `seed`.
    case dropoutTraining(ratio: Float, seed: UInt64)

    // MARK: Shape and data-movement family
    /// `[x, shape]`; 0 copies the input dim unless `allowZero`, -1 infers.
    case reshape(allowZero: Bool)
    case flatten(axis: Int)
    case transpose(perm: [Int]?)
    case concat(axis: Int)
    /// `[x, sizes?]`; equal parts when sizes are absent (`count` outputs).
    case split(axis: Int, count: Int)
    /// `[x, starts, ends, axes?, steps?]`.
    case slice
    /// `[x, indices]` along `axis`.
    case gather(axis: Int)
    case gatherElements(axis: Int)
    /// `[data, indices]`: slices of data addressed by index tuples (indices' last axis), the
    /// first `batchDims` axes shared by both.
    case gatherND(batchDims: Int)
    /// `[data, indices, updates]`: data with the slices named by index tuples combined with
    /// the updates.
    case scatterND(reduction: ScatterCombine)
    /// `[data, indices, updates]`: data with one element per index (along `axis`) combined
    /// with the matching update.
    case scatterElements(axis: Int, reduction: ScatterCombine)
    /// `[x, axis]`: running sum along a plan-time axis.
    case cumSum(exclusive: Bool, reverse: Bool)
    /// `[x, axis]`: running product along a plan-time axis.
    case cumProd(exclusive: Bool, reverse: Bool)
    /// `[x, k]` -> `[values, indices]`: the k largest (or smallest) along `axis`, ties to
    /// the lower index.
    case topK(axis: Int, largest: Bool, sorted: Bool)
    /// `[indices, depth, values]`: a new axis at `axis` of length depth holding values[1] at
    /// each index and values[0] elsewhere.
    case oneHot(axis: Int)
    /// `[x, k?]`: the upper (or lower) triangle of the last two axes from diagonal k, zeros
    /// elsewhere.
    case triangle(upper: Bool)
    /// `[x, grid]`: x `[N, C, spatial...]` sampled at grid `[N, out..., s]` (normalised
    /// coordinates, the last spatial axis first) -> `[N, C, out...]`.
    case gridSample(GridSampleParams)
    /// `[x, condition]`: the slices along `axis` (of the flattened x when nil) where the
    /// bool condition holds; the condition must be known before the run.
    case compress(axis: Int?)
    /// `[x]` -> `[values, firstIndices, inverseIndices, counts]`: the distinct elements (or
    /// slices along `axis`), sorted or in order of first appearance; x must be known before
    /// the run.
    case unique(axis: Int?, sorted: Bool)
    /// `[x, w, r, bias?, lengths?, h0?, c0?, peephole?]` -> `[y, lastHidden, lastCell?]`: a
    /// recurrent layer over x `[S, B, I]` (see `RecurrentParams`).
    case recurrent(RecurrentParams)
    /// `[x, length?, axis?]`: the discrete Fourier transform of x `[..., n, ..., 1 or 2]`
    /// (real or complex last axis) along `axis` (the field, else input 2), length and axis
    /// known before the run.
    case dft(inverse: Bool, onesided: Bool, axis: Int?)
    /// `[x, imageShape, blockShape]`: sliding blocks `[N, C * prod(block), L]` summed back into
    /// an image `[N, C, image...]`; `pads` holds all begins then all ends.
    case col2im(strides: [Int], dilations: [Int], pads: [Int])
    /// `[boxes, scores, maxPerClass?, iouThreshold?, scoreThreshold?]` -> selected
    /// `[K, 3]` (batch, class, box) by greedy non-maximum suppression; every operand must be
    /// known before the run (the count K depends on the values).
    case nonMaxSuppression(centerPointBox: Bool)
    /// `[q, k, v, pastState?, decay?, beta?]` -> `[y, state]`: linear attention over time
    /// with `qHeads` query heads sharing `kvHeads` states (decay gates and delta correction when
    /// their inputs are given); `scale` nil means 1/sqrt(dk).
    case linearAttention(qHeads: Int, kvHeads: Int, scale: Float?)
    /// `[x]`: determinants of the `[..., M, M]` matrices.
    case determinant
    /// `[x, indices, outputShape?]`: pooled values put back at their flat indices into a
    /// zeroed `[N, C, spatial...]` (sizes from outputShape, else from the window geometry).
    case maxUnpool(kernel: [Int], strides: [Int], pads: [Int])
    /// The input's shape as int64, optionally `[start, end)`.
    case shape(start: Int, end: Int?)
    case size
    /// `[shape]` -> a tensor filled with `value`.
    case constantOfShape(value: Tensor)
    /// `[x, axes]`.
    case unsqueeze
    /// `[x, axes?]`.
    case squeeze
    /// `[x, shape]` broadcast.
    case expand
    /// `[x, repeats]`.
    case tile
    /// `[x, pads, value?, axes?]`.
    case pad(mode: PadFill)
    /// `[x, roi?, scales?, sizes?]`.
    case resize(ResizeParams)
    /// `[start, limit, delta]`.
    case range
    case depthToSpace(blockSize: Int, columnRowDepth: Bool)
    case spaceToDepth(blockSize: Int)
    case argExtreme(max: Bool, axis: Int, keepDims: Bool, selectLastIndex: Bool)
    /// `[x, axes?]`; axes from an input (opset >= 18 or ReduceSum >= 13) or from `axes`.
    case reduce(ReduceFunction, axes: [Int]?, keepDims: Bool, noopWithEmptyAxes: Bool)
    case identity
    /// A value fixed in the graph.
    case constant(Tensor)
}

/// The op families. Each has its lowering in `Lowering+<Family>.swift` and its backward
/// rules in BraidTraining's `Backward+<Family>.swift`; both dispatchers go by `Op.family`,
/// so an op joins them by its line here.
public enum OpFamily: Sendable {
    case math, nn, shape, indexing, reduce
}

extension Op {
    public var family: OpFamily {
        switch self {
        case .unary, .binary, .variadic, .select, .clip, .prelu, .cast, .castLike, .reinterpretBits:
            return .math
        case .conv, .convTranspose, .gemm, .matMul, .batchNorm, .channelChain, .instanceNorm, .layerNorm,
             .pool, .globalPool, .lrn, .softmax, .dropout, .batchNormTraining, .dropoutTraining:
            return .nn
        case .reshape, .flatten, .transpose, .concat, .split, .slice, .gather, .gatherElements,
             .shape, .size, .constantOfShape, .unsqueeze, .squeeze, .expand, .tile, .pad,
             .resize, .range, .depthToSpace, .spaceToDepth, .identity, .constant:
            return .shape
        case .gatherND, .scatterND, .scatterElements, .cumSum, .cumProd, .topK, .oneHot, .triangle, .gridSample,
             .compress, .unique, .recurrent, .dft, .col2im, .nonMaxSuppression, .linearAttention, .determinant, .maxUnpool:
            return .indexing
        case .reduce, .argExtreme:
            return .reduce
        }
    }
}

public enum VariadicOp: Sendable, Equatable {
    case sum, mean, max, min
}

public enum PoolKind: Sendable, Equatable {
    case max, average
    /// Lp pooling with exponent p.
    case lp(p: Int)
}

public struct GridSampleParams: Sendable, Equatable {
    public typealias Mode = GridSampleMode
    public typealias Padding = GridSamplePadding
    public var mode: Mode
    public var padding: Padding
    /// Coordinates -1 and 1 name the centres of the corner elements (else their outer edges).
    public var alignCorners: Bool

    public init(mode: Mode, padding: Padding, alignCorners: Bool) {
        self.mode = mode; self.padding = padding; self.alignCorners = alignCorners
    }
}

/// How a scalar is laid out in memory, for reinterpreting bits. Braid stores every float as
/// float32 and every integer as Int64, so the layout says which width the bits had.
public enum BitLayout: Sendable, Equatable {
    case float16, bfloat16, float32, float64, bool
    case integer(bits: Int, signed: Bool)

    /// The Braid type values of this layout are stored as.
    public var storage: DType {
        switch self {
        case .float16, .bfloat16, .float32, .float64: return .float32
        case .bool: return .bool
        case .integer(let bits, let signed):
            switch (bits, signed) {
            case (8, true): return .int8
            case (8, false): return .uint8
            case (16, true): return .int16
            case (16, false): return .uint16
            case (32, true): return .int32
            case (32, false): return .uint32
            case (64, false): return .uint64
            default: return .int64
            }
        }
    }

    public var bits: Int {
        switch self {
        case .float16, .bfloat16: return 16
        case .float32: return 32
        case .float64: return 64
        case .bool: return 8
        case .integer(let b, _): return b
        }
    }
}

/// A recurrent layer: its cell, one entry per direction (running backward or not) with that
/// direction's activations (f[, g[, h]]), hidden size and optional pre-activation clip.
/// Weights `[D, G*H, I]` and `[D, G*H, H]`, gates ordered (z, r, h) for GRU and (i, o, f, c)
/// for LSTM; y `[S, D, B, H]`.
public struct RecurrentParams: Sendable, Equatable {
    public typealias Cell = RecurrentCell
    public var cell: Cell
    public var reverse: [Bool]
    public var activations: [[UnaryFunction]]
    public var hiddenSize: Int
    public var clip: Float?

    public init(cell: Cell, reverse: [Bool], activations: [[UnaryFunction]], hiddenSize: Int, clip: Float?) {
        self.cell = cell; self.reverse = reverse; self.activations = activations
        self.hiddenSize = hiddenSize; self.clip = clip
    }
}

/// How a scatter combines an update with the element in place.
/// Convolution geometry. Arrays have one entry per spatial axis; `pads` holds all begins then
/// all ends (`[h0, w0, h1, w1]` in 2-D), already resolved from any auto-pad rule except when
/// `autoPad` asks the planner to resolve it from the input size.
public struct ConvParams: Sendable, Equatable {
    public var kernel: [Int]
    public var strides: [Int]
    public var pads: [Int]
    public var dilations: [Int]
    public var group: Int
    public var autoPad: AutoPad
    /// What the inference optimiser folded into this convolution (`Passes.fuseConvEpilogues`);
    /// nil for every convolution an importer makes. Exporters and training reject fused nodes.
    public var fusion: ConvFusion?
    /// The order the products are summed in; `.fastest` for every convolution but the float
    /// ones an importer finds between quantize steps.
    public var summation: ConvSummation

    public init(kernel: [Int], strides: [Int], pads: [Int], dilations: [Int], group: Int,
                autoPad: AutoPad = .explicit, fusion: ConvFusion? = nil, summation: ConvSummation = .fastest) {
        self.kernel = kernel; self.strides = strides; self.pads = pads
        self.dilations = dilations; self.group = group; self.autoPad = autoPad
        self.fusion = fusion; self.summation = summation
    }
}

/// The order a float convolution sums its products and bias in. Rounding depends on it; the
/// difference is a last bit, which matters only where the next step rounds to an integer.
public enum ConvSummation: Sendable, Equatable {
    /// The kernel's own order (the fastest it has).
    case fastest
    /// onnxruntime's CPU order (MLAS's SGEMM under its Conv; `MLASOrderConv2D`): per output,
    /// the products in `[C/group, kH, kW]` order in slices, each a chain of fused multiply-adds
    /// from zero, the slices added left to right, then the bias. The ONNX importer sets it on a
    /// quantized graph's float convolutions (the groups onnxruntime leaves unfused), so that the
    /// QuantizeLinear after them rounds the float onnxruntime rounds. Where that kernel does
    /// not apply (3-D; one output channel per group or a 1x1 plane, which MLAS sums with other
    /// kernels) the convolution runs as `.fastest`, and nothing fuses into it.
    case onnxruntimeCPU
}

/// The element-wise tail fused into a convolution: `y = activation(conv + bias + residual)`.
/// With `residual`, the node has a fourth input (after an empty bias name if there is no bias)
/// that is broadcast to the convolution's output, as the Add it replaces did.
public struct ConvFusion: Sendable, Equatable {
    public var residual: Bool
    public var activation: ConvActivation?
    /// The weight (and bias) are constants of the graph (`Passes.markConstantWeights`), so the
    /// kernel may transform them once when the plan is made (Winograd's 3x3 method does).
    public var constantWeights: Bool

    public init(residual: Bool = false, activation: ConvActivation? = nil, constantWeights: Bool = false) {
        self.residual = residual; self.activation = activation; self.constantWeights = constantWeights
    }
}

/// One step of a `channelChain`: inference-mode batch normalisation, or the data combined with
/// one operand (the data on the left).
public enum ChannelStep: Sendable, Equatable {
    case batchNorm(epsilon: Float)
    case binary(BinaryFunction)

    /// How many operands the step reads after the data.
    public var operandCount: Int {
        if case .batchNorm = self { return 4 }
        return 1
    }
}

public struct ConvTransposeParams: Sendable, Equatable {
    public var conv: ConvParams
    public var outputPadding: [Int]
    /// Explicit output spatial shape, when given it decides the padding.
    public var outputShape: [Int]?

    public init(conv: ConvParams, outputPadding: [Int], outputShape: [Int]?) {
        self.conv = conv; self.outputPadding = outputPadding; self.outputShape = outputShape
    }
}

/// How padding is decided: given explicitly, or TensorFlow/ONNX "same" (extra pad at the end
/// for `sameUpper`, at the start for `sameLower`), or none (`valid`).
public enum AutoPad: Sendable, Equatable { case explicit, sameUpper, sameLower, valid }

public struct PoolParams: Sendable, Equatable {
    public var kind: PoolKind
    public var kernel: [Int]
    public var strides: [Int]
    public var pads: [Int]
    public var dilations: [Int]
    public var autoPad: AutoPad
    public var ceilMode: Bool
    /// Average pooling: divide by the full window including padding.
    public var countIncludePad: Bool
    /// MaxPool's optional second output (flat indices); row-major unless set.
    public var storageOrderColumnMajor: Bool

    public init(kind: PoolKind, kernel: [Int], strides: [Int], pads: [Int], dilations: [Int],
                autoPad: AutoPad, ceilMode: Bool, countIncludePad: Bool,
                storageOrderColumnMajor: Bool = false) {
        self.kind = kind; self.kernel = kernel; self.strides = strides; self.pads = pads
        self.dilations = dilations; self.autoPad = autoPad; self.ceilMode = ceilMode
        self.countIncludePad = countIncludePad
        self.storageOrderColumnMajor = storageOrderColumnMajor
    }
}

public struct ResizeParams: Sendable, Equatable {
    public enum Mode: Sendable, Equatable { case nearest, linear, cubic }
    public enum AspectPolicy: Sendable, Equatable { case stretch, notLarger, notSmaller }

    public var mode: Mode
    public var coordinate: ResizeCoordinates
    public var nearest: ResizeRounding
    public var cubicCoefficient: Float
    public var excludeOutside: Bool
    public var extrapolationValue: Float
    public var antialias: Bool
    public var axes: [Int]?
    public var aspect: AspectPolicy

    public init(mode: Mode, coordinate: ResizeCoordinates, nearest: ResizeRounding,
                cubicCoefficient: Float = -0.75, excludeOutside: Bool = false,
                extrapolationValue: Float = 0, antialias: Bool = false, axes: [Int]? = nil,
                aspect: AspectPolicy = .stretch) {
        self.mode = mode; self.coordinate = coordinate; self.nearest = nearest
        self.cubicCoefficient = cubicCoefficient; self.excludeOutside = excludeOutside
        self.extrapolationValue = extrapolationValue; self.antialias = antialias
        self.axes = axes; self.aspect = aspect
    }
}
