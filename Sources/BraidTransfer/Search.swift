import BraidTensor
import BraidTraining
import Foundation

/// Settings of the particle swarm over freeze depths (AMCF's layer selection).
public struct SwarmOptions: Codable, Sendable, Equatable {
    /// Number of particles n.
    public var particles = 10
    /// Number of iterations G; the first evaluates the initial swarm, every later one moves
    /// the particles once and evaluates them, so at most n * G schemes are evaluated.
    public var iterations = 5
    /// Inertia w at the first move, falling linearly to `inertiaEnd` at the last.
    public var inertiaStart = 1.4
    public var inertiaEnd = 0.7
    /// Cognitive (personal best) and social (global best) acceleration.
    public var c1 = 1.5
    public var c2 = 1.5
    /// Each velocity component is clamped to `-maxVelocity...maxVelocity` layer units.
    public var maxVelocity = 5.0
    public var seed: UInt64 = 0

    public init() {}
}

/// One fitness evaluation of a scheme (computed, not served from the cache).
public struct SchemeEvaluation: Codable, Sendable, Equatable {
    /// The iteration (0-based) and particle that first reached the scheme.
    public var iteration: Int
    public var particle: Int
    /// Freeze depth per member.
    public var scheme: [Int]
    public var fitness: Double
    public var seconds: Double
}

/// A particle's state after an iteration.
public struct ParticleState: Codable, Sendable, Equatable {
    public var position: [Double]
    public var velocity: [Double]
    public var scheme: [Int]
    public var fitness: Double
}

/// The best scheme found so far, after an iteration.
public struct IterationBest: Codable, Sendable, Equatable {
    public var iteration: Int
    public var scheme: [Int]
    public var fitness: Double
}

/// What a swarm search did: every computed evaluation in order, the global best after each
/// iteration, the particles' states, and how often the cache answered.
public struct SwarmResult: Codable, Sendable {
    public var upperBounds: [Int]
    public var options: SwarmOptions
    public var evaluations: [SchemeEvaluation]
    public var globalBest: [IterationBest]
    /// `trajectory[g][i]`: particle i after iteration g.
    public var trajectory: [[ParticleState]]
    /// Particle visits answered from the cache (a scheme evaluated before).
    public var cacheHits: Int
    public var bestScheme: [Int]
    public var bestFitness: Double
    public var seconds: Double
}

/// Particle swarm optimisation over integer vectors k with `0 <= k[j] <= upperBounds[j]`,
/// maximising a fitness.
///
/// Positions are real vectors in `[0, L_j]`, initially a Latin hypercube sample (in each
/// dimension one particle per n-th of the range) with velocities uniform in
/// +-`maxVelocity`; a particle's scheme is the floor of its position
/// clamped to `[0, L_j]`. Velocities update as
/// `v = w v + c1 r1 (pbest - x) + c2 r2 (gbest - x)` with r1, r2 uniform in [0, 1) per
/// component, are clamped to +-`maxVelocity`, and positions are clamped to the bounds.
/// Personal and global bests change only on strictly greater fitness. Identical schemes are
/// evaluated once. The same options (seed included) and fitness give the same search.
public struct ParticleSwarm {
    public var options: SwarmOptions
    /// L_j per dimension.
    public let upperBounds: [Int]

    public init(upperBounds: [Int], options: SwarmOptions) throws {
        guard !upperBounds.isEmpty, upperBounds.allSatisfy({ $0 >= 0 }) else {
            throw TrainingError("the swarm needs one non-negative upper bound per member, got \(upperBounds)")
        }
        guard options.particles >= 1, options.iterations >= 1 else {
            throw TrainingError("the swarm needs at least one particle and one iteration (got \(options.particles) and \(options.iterations))")
        }
        guard options.maxVelocity > 0, options.c1 >= 0, options.c2 >= 0 else {
            throw TrainingError("the swarm needs a positive maximum velocity and non-negative c1, c2")
        }
        self.upperBounds = upperBounds
        self.options = options
    }

    /// The scheme of a position: floor of each component, clamped to `[0, L_j]`.
    public static func scheme(of position: [Double], upperBounds: [Int]) -> [Int] {
        zip(position, upperBounds).map { x, l in min(max(Int(x.rounded(.down)), 0), l) }
    }

    /// The inertia used for the move into iteration `g` (1...G-1): linear from
    /// `inertiaStart` at the first move to `inertiaEnd` at the last.
    public func inertia(iteration g: Int) -> Double {
        let moves = options.iterations - 1
        guard moves > 1 else { return options.inertiaStart }
        let t = Double(g - 1) / Double(moves - 1)
        return options.inertiaStart + (options.inertiaEnd - options.inertiaStart) * t
    }

    /// Runs the search. `replay` holds evaluations of an interrupted search of the same
    /// options: a scheme found there is taken from it instead of being computed again, so the
    /// resumed search ends exactly where an uninterrupted one would. `onEvaluation` is called
    /// after each evaluation (computed or replayed).
    ///
    /// `reuse` false evaluates a scheme again at every visit (as a search without a
    /// memo would); only for measuring what the memo saves.
    ///
    /// `evaluateAll`, when given, computes at the start of each iteration every scheme that
    /// iteration needs (in particle order, returning fitness and seconds of each) instead of
    /// `fitness` computing them one by one: the schemes of an iteration are independent, so
    /// they can be spread over processes. The search is the same either way.
    public func run(replay: [SchemeEvaluation] = [], reuse: Bool = true,
                    onEvaluation: (SchemeEvaluation) throws -> Void = { _ in },
                    evaluateAll: (([[Int]]) throws -> [(fitness: Double, seconds: Double)])? = nil,
                    fitness: ([Int]) throws -> Double) throws -> SwarmResult {
        let start = Date()
        let n = options.particles, dims = upperBounds.count
        var rng = SplitMix64(seed: options.seed ^ 0x5053_4F00)
        func unit() -> Double { Double(rng.next() >> 11) * 0x1p-53 }
        let vmax = options.maxVelocity
        // Latin hypercube start: per dimension, each particle gets its own 1/n of the range,
        // so even a small swarm starts spread over shallow and deep freezing.
        var x = [[Double]](repeating: [Double](repeating: 0, count: dims), count: n)
        for d in 0..<dims {
            var strata = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { strata.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            for i in 0..<n { x[i][d] = Double(upperBounds[d]) * (Double(strata[i]) + unit()) / Double(n) }
        }
        var v = (0..<n).map { _ in (0..<dims).map { _ in vmax * (2 * unit() - 1) } }
        var pbest = x, pbestFitness = [Double](repeating: -.infinity, count: n)
        var gbest = x[0], gbestFitness = -Double.infinity
        var cache: [[Int]: Double] = [:]
        let replayed = Dictionary(replay.map { ($0.scheme, $0) }, uniquingKeysWith: { a, _ in a })
        var evaluations: [SchemeEvaluation] = [], bests: [IterationBest] = [], trajectory: [[ParticleState]] = []
        var hits = 0
        for g in 0..<options.iterations {
            if g > 0 {
                let w = inertia(iteration: g)
                for i in 0..<n {
                    for d in 0..<dims {
                        let r1 = unit(), r2 = unit()
                        var vel = w * v[i][d] + options.c1 * r1 * (pbest[i][d] - x[i][d])
                            + options.c2 * r2 * (gbest[d] - x[i][d])
                        vel = min(max(vel, -vmax), vmax)
                        v[i][d] = vel
                        x[i][d] = min(max(x[i][d] + vel, 0), Double(upperBounds[d]))
                    }
                }
            }
            var precomputed: [Int: (fitness: Double, seconds: Double)] = [:]
            if let evaluateAll {
                var wanted: [Int] = [], seen = Set<[Int]>()
                for i in 0..<n {
                    let scheme = Self.scheme(of: x[i], upperBounds: upperBounds)
                    if reuse && (cache[scheme] != nil || replayed[scheme] != nil || !seen.insert(scheme).inserted) { continue }
                    wanted.append(i)
                }
                let schemes = wanted.map { Self.scheme(of: x[$0], upperBounds: upperBounds) }
                let results = try evaluateAll(schemes)
                guard results.count == schemes.count else {
                    throw TrainingError("the swarm asked for \(schemes.count) fitness values and got \(results.count)")
                }
                for (i, r) in zip(wanted, results) { precomputed[i] = r }
            }
            var states: [ParticleState] = []
            for i in 0..<n {
                let scheme = Self.scheme(of: x[i], upperBounds: upperBounds)
                let f: Double
                if reuse, let known = cache[scheme] {
                    f = known
                    hits += 1
                } else {
                    let e: SchemeEvaluation
                    if let old = replayed[scheme] {
                        e = SchemeEvaluation(iteration: g, particle: i, scheme: scheme, fitness: old.fitness, seconds: old.seconds)
                    } else if let done = precomputed[i] {
                        e = SchemeEvaluation(iteration: g, particle: i, scheme: scheme, fitness: done.fitness, seconds: done.seconds)
                    } else {
                        let t0 = Date()
                        let value = try fitness(scheme)
                        e = SchemeEvaluation(iteration: g, particle: i, scheme: scheme, fitness: value,
                                             seconds: Date().timeIntervalSince(t0))
                    }
                    f = e.fitness
                    cache[scheme] = f
                    evaluations.append(e)
                    try onEvaluation(e)
                }
                if f > pbestFitness[i] { pbestFitness[i] = f; pbest[i] = x[i] }
                if f > gbestFitness { gbestFitness = f; gbest = x[i] }
                states.append(ParticleState(position: x[i], velocity: v[i], scheme: scheme, fitness: f))
            }
            trajectory.append(states)
            bests.append(IterationBest(iteration: g, scheme: Self.scheme(of: gbest, upperBounds: upperBounds),
                                       fitness: gbestFitness))
        }
        return SwarmResult(upperBounds: upperBounds, options: options, evaluations: evaluations, globalBest: bests,
                           trajectory: trajectory, cacheHits: hits, bestScheme: bests.last?.scheme ?? [],
                           bestFitness: gbestFitness, seconds: Date().timeIntervalSince(start))
    }
}
