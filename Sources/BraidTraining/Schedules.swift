import Foundation

/// A learning rate as a function of the epoch (and of the step within training for warm-up).
public enum LRSchedule: Sendable, Equatable {
    /// The base rate throughout.
    case constant
    /// Multiply by `gamma` every `stepSize` epochs (PyTorch's StepLR).
    case step(stepSize: Int, gamma: Float)
    /// Cosine from the base rate to `minLR` over `epochs` epochs.
    case cosine(epochs: Int, minLR: Float)

    /// The rate for `epoch` (0-based) before any warm-up.
    public func rate(base: Float, epoch: Int) -> Float {
        switch self {
        case .constant:
            return base
        case .step(let size, let gamma):
            var r = base
            for _ in 0..<(epoch / max(size, 1)) { r *= gamma }
            return r
        case .cosine(let epochs, let minLR):
            let t = Float(min(epoch, epochs)) / Float(max(epochs, 1))
            return minLR + (base - minLR) * (1 + cosf(Float.pi * t)) / 2
        }
    }
}

/// Linear warm-up factor for global step `step` (0-based) over `steps` steps.
public func warmupFactor(step: Int, steps: Int) -> Float {
    steps <= 0 || step >= steps ? 1 : Float(step + 1) / Float(steps)
}
