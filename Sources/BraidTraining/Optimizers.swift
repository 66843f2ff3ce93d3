import BraidTensor

/// Hyper-parameters shared by a set of parameters: learning-rate multiplier and weight decay.
public struct ParamGroup: Sendable {
    public var names: Set<String>
    public var lrScale: Float
    public var weightDecay: Float

    public init(names: Set<String>, lrScale: Float = 1, weightDecay: Float) {
        self.names = names; self.lrScale = lrScale; self.weightDecay = weightDecay
    }
}

/// Updates parameters in place from their gradients.
///
/// State (momentum, moments) is created on the first step for exactly the parameters that
/// are passed, so frozen parameters never get any. `state` exposes it for checkpoints.
public protocol Optimizer: AnyObject {
    /// One update with base learning rate `lr`. `params` and `grads` share names and shapes.
    func step(params: [String: Tensor], grads: [String: Tensor], lr: Float)
    /// Named state tensors (e.g. "momentum/conv1.weight") and the step count, for saving.
    var state: [String: Tensor] { get set }
    var stepCount: Int { get set }
}

func groupFor(_ name: String, _ groups: [ParamGroup], defaultDecay: Float) -> (Float, Float) {
    for g in groups where g.names.contains(name) { return (g.lrScale, g.weightDecay) }
    return (1, defaultDecay)
}

/// Stochastic gradient descent with momentum (PyTorch's rule: the first step's buffer is the
/// gradient itself), optional Nesterov momentum and L2 weight decay added to the gradient.
public final class SGD: Optimizer {
    public var momentum: Float
    public var nesterov: Bool
    public var weightDecay: Float
    public var groups: [ParamGroup]
    public var state: [String: Tensor] = [:]
    public var stepCount = 0

    public init(momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0, groups: [ParamGroup] = []) {
        self.momentum = momentum; self.nesterov = nesterov; self.weightDecay = weightDecay; self.groups = groups
    }

    public func step(params: [String: Tensor], grads: [String: Tensor], lr: Float) {
        stepCount += 1
        for (name, p) in params {
            guard let g = grads[name] else { continue }
            let (scale, wd) = groupFor(name, groups, defaultDecay: weightDecay)
            let rate = lr * scale
            let n = p.count
            let w = p.floats, dw = g.floats
            if momentum == 0 {
                for i in 0..<n { w[i] -= rate * (dw[i] + wd * w[i]) }
                continue
            }
            let key = "momentum/" + name
            let fresh = state[key] == nil
            if fresh { state[key] = Tensor(zeros: p.shape) }
            let buf = state[key]!.floats
            let mu = momentum
            for i in 0..<n {
                let d = dw[i] + wd * w[i]
                let b = fresh ? d : mu * buf[i] + d
                buf[i] = b
                w[i] -= rate * (nesterov ? d + mu * b : b)
            }
        }
    }
}

/// Adam, or AdamW when `decoupled` (weight decay applied to the weights, not the gradient).
public final class Adam: Optimizer {
    public var beta1, beta2, epsilon, weightDecay: Float
    public var decoupled: Bool
    public var groups: [ParamGroup]
    public var state: [String: Tensor] = [:]
    public var stepCount = 0

    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8,
                weightDecay: Float = 0, decoupled: Bool = false, groups: [ParamGroup] = []) {
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.weightDecay = weightDecay; self.decoupled = decoupled; self.groups = groups
    }

    public func step(params: [String: Tensor], grads: [String: Tensor], lr: Float) {
        stepCount += 1
        let c1 = 1 - Float(Double(beta1).power(stepCount))
        let c2 = 1 - Float(Double(beta2).power(stepCount))
        for (name, p) in params {
            guard let g = grads[name] else { continue }
            let (scale, wd) = groupFor(name, groups, defaultDecay: weightDecay)
            let rate = lr * scale
            if state["m/" + name] == nil {
                state["m/" + name] = Tensor(zeros: p.shape)
                state["v/" + name] = Tensor(zeros: p.shape)
            }
            let m = state["m/" + name]!.floats, v = state["v/" + name]!.floats
            let w = p.floats, dw = g.floats
            let (b1, b2, eps) = (beta1, beta2, epsilon)
            for i in 0..<p.count {
                var d = dw[i]
                if decoupled { w[i] -= rate * wd * w[i] } else { d += wd * w[i] }
                m[i] = b1 * m[i] + (1 - b1) * d
                v[i] = b2 * v[i] + (1 - b2) * d * d
                w[i] -= rate * (m[i] / c1) / ((v[i] / c2).squareRoot() + eps)
            }
        }
    }
}

extension Double {
    func power(_ n: Int) -> Double {
        var r = 1.0
        for _ in 0..<n { r *= self }
        return r
    }
}

/// The joint L2 norm of `grads` (summed in name order, in double precision, so that the
/// same gradients give the same norm in every process).
public func gradientNorm(_ grads: [String: Tensor]) -> Float {
    var sum: Double = 0
    for name in grads.keys.sorted() {
        let g = grads[name]!.floats
        for i in 0..<grads[name]!.count { sum += Double(g[i]) * Double(g[i]) }
    }
    return Float(sum.squareRoot())
}

/// Scales gradients so that their joint L2 norm is at most `maxNorm`; returns the norm
/// before clipping.
@discardableResult
public func clipGradientNorm(_ grads: [String: Tensor], maxNorm: Float) -> Float {
    let norm = gradientNorm(grads)
    if norm > maxNorm { scaleGradients(grads, by: maxNorm / (norm + 1e-6)) }
    return norm
}

func scaleGradients(_ grads: [String: Tensor], by s: Float) {
    for g in grads.values {
        let p = g.floats
        for i in 0..<g.count { p[i] *= s }
    }
}

/// Adaptive gradient clipping (AutoClip: Seetharaman, Wichern, Pardo, Le Roux, "AutoClip:
/// Adaptive Gradient Clipping for Source Separation Networks", 2020): each step's gradient is
/// clipped to the `percentile`-th percentile (nearest rank) of the joint norms of every step
/// so far, its own included. No threshold to tune: it follows the model's own gradient scale,
/// and a step whose norm is an outlier (a batch holding an image whose features are a hundred
/// times the usual size) moves the weights no further than a typical step.
public struct AdaptiveClip: Sendable {
    /// In (0, 100]; 100 never clips, 50 clips every step above the median so far.
    public let percentile: Float
    /// The norms seen, ascending.
    public private(set) var norms: [Float] = []

    public init(percentile: Float) {
        precondition(percentile > 0 && percentile <= 100)
        self.percentile = percentile
    }

    /// The threshold over the norms seen so far (nil before any).
    public var threshold: Float? {
        guard !norms.isEmpty else { return nil }
        let rank = Int((Double(percentile) / 100 * Double(norms.count)).rounded(.up))
        return norms[min(max(rank, 1), norms.count) - 1]
    }

    /// Records the norm of `grads` and scales them down to the threshold when above it.
    /// Returns the norm before clipping and the threshold used.
    @discardableResult
    public mutating func clip(_ grads: [String: Tensor]) -> (norm: Float, threshold: Float) {
        let norm = gradientNorm(grads)
        guard norm.isFinite else { return (norm, threshold ?? norm) }
        var lo = 0, hi = norms.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if norms[mid] < norm { lo = mid + 1 } else { hi = mid }
        }
        norms.insert(norm, at: lo)
        let limit = threshold!
        if norm > limit { scaleGradients(grads, by: limit / norm) }
        return (norm, limit)
    }
}
