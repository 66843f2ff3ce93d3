import BraidKernels
import BraidTensor

/// A `channelChain` (`Passes.fuseChannelChains`). When every binary operand holds one value or
/// one per channel (its only non-1 dimension lined up with axis 1), the steps fold at each run
/// into one scale and shift per channel, and the data is read once with the activation applied
/// on the way. Otherwise the steps run one after another, each broadcast as its node was.
func lowerChannelChain(_ node: Node, _ steps: [ChannelStep], _ activation: ConvActivation?,
                       _ inputs: [PlanValue?]) throws -> LoweredOp {
    let x = try nnFloatInput(0, node, inputs, "X")
    guard x.shape.count >= 2 else {
        throw GraphError(node: node.name, "\(node.sourceOp) needs input [N, C, ...], got \(x.shape)")
    }
    let n = x.shape[0], c = x.shape[1], spatial = x.shape.dropFirst(2).reduce(1, *), count = x.shape.reduce(1, *)
    var layouts: [BroadcastLayout?] = [], perChannel = true, index = 1
    for step in steps {
        switch step {
        case .batchNorm:
            for role in ["scale", "B", "mean", "var"] {
                try nnExpectShape(try nnFloatInput(index, node, inputs, role), [c], node, role)
                index += 1
            }
            layouts.append(nil)
        case .binary(let op):
            guard [.add, .sub, .mul, .div].contains(op) else {
                throw GraphError(node: node.name, "\(node.sourceOp): \(op) cannot be a step of a channel chain")
            }
            let v = try nnFloatInput(index, node, inputs, "operand \(index)")
            index += 1
            guard let layout = BroadcastLayout(inputs: [x.shape, v.shape]), layout.shape == x.shape else {
                throw GraphError(node: node.name, "\(node.sourceOp) operand of shape \(v.shape) does not broadcast to the data's \(x.shape)")
            }
            layouts.append(layout)
            let offset = x.shape.count - v.shape.count
            if v.shape.reduce(1, *) != 1
                && !v.shape.indices.allSatisfy({ v.shape[$0] == 1 || (offset + $0 == 1 && v.shape[$0] == c) }) {
                perChannel = false
            }
        }
    }
    let act = activation
    if perChannel {
        return LoweredOp(outputs: [(x.shape, .float32)]) { ins, outs in
            let holder = NNScratch(count: 4 * c)
            let scale = holder.pointer, shift = scale + c, s = shift + c, t = s + c
            let operands = (1..<ins.count).map { UnsafePointer(ins[$0]!.floats) }
            let counts = (1..<ins.count).map { ins[$0]!.count }
            let xp = ins[0]!.floats, yp = outs[0].floats
            return {
                withExtendedLifetime(holder) {}
                scale.update(repeating: 1, count: c)
                shift.update(repeating: 0, count: c)
                var k = 0
                for step in steps {
                    switch step {
                    case .batchNorm(let epsilon):
                        batchNormCoefficients(channels: c, scale: operands[k], bias: operands[k + 1], mean: operands[k + 2],
                                              variance: operands[k + 3], epsilon: epsilon, outScale: s, outShift: t)
                        for j in 0..<c {
                            scale[j] *= s[j]
                            shift[j] = shift[j] * s[j] + t[j]
                        }
                        k += 4
                    case .binary(let op):
                        let v = operands[k], one = counts[k] == 1
                        for j in 0..<c {
                            let w = one ? v[0] : v[j]
                            switch op {
                            case .mul: scale[j] *= w; shift[j] *= w
                            case .div: scale[j] /= w; shift[j] /= w
                            case .add: shift[j] += w
                            default: shift[j] -= w
                            }
                        }
                        k += 1
                    }
                }
                channelAffine(batch: n, channels: c, spatial: spatial, x: xp, scale: scale, shift: shift, activation: act, y: yp)
            }
        }
    }
    return LoweredOp(outputs: [(x.shape, .float32)]) { ins, outs in
        let holder = NNScratch(count: 2 * c)
        let other = Tensor(zeros: x.shape)
        let operands = (1..<ins.count).map { UnsafePointer(ins[$0]!.floats) }
        let xp = UnsafePointer(ins[0]!.floats), yp = outs[0].floats, op = other.floats
        return {
            withExtendedLifetime(holder) {}
            withExtendedLifetime(other) {}
            var source = xp, k = 0
            for (i, step) in steps.enumerated() {
                // The last step writes the output; the ones before alternate so that it does.
                let target = (steps.count - 1 - i) % 2 == 0 ? yp : op
                switch step {
                case .batchNorm(let epsilon):
                    batchNormCoefficients(channels: c, scale: operands[k], bias: operands[k + 1], mean: operands[k + 2],
                                          variance: operands[k + 3], epsilon: epsilon, outScale: holder.pointer,
                                          outShift: holder.pointer + c)
                    channelAffine(batch: n, channels: c, spatial: spatial, x: source, scale: holder.pointer,
                                  shift: holder.pointer + c, y: target)
                    k += 4
                case .binary(let f):
                    Elementwise.binary(f, layouts[i]!, source, operands[k], target)
                    k += 1
                }
                source = UnsafePointer(target)
            }
            act?.apply(yp, cols: count)
        }
    }
}
