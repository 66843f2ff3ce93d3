import Foundation
import XCTest
@testable import BraidTransfer

/// The swarm with an iteration's schemes computed together (as MPI ranks share them out)
/// is the same search as with schemes computed one by one.
final class SearchSpreadTests: XCTestCase {
    static func ridge(_ k: [Int]) -> Double {
        -Double(abs(k[0] - 4) * 3 + (k[1] - 9) * (k[1] - 9)) + Double(k[2] % 3) * 0.5
    }

    func testBatchedEvaluationIsTheSameSearch() throws {
        for seed: UInt64 in 0..<4 {
            for reuse in [true, false] {
                var o = SwarmOptions()
                o.particles = 6; o.iterations = 4; o.seed = seed
                let swarm = try ParticleSwarm(upperBounds: [8, 14, 5], options: o)
                let one = try swarm.run(reuse: reuse, fitness: Self.ridge)
                var batches: [[[Int]]] = []
                let spread = try swarm.run(reuse: reuse, evaluateAll: { schemes in
                    batches.append(schemes)
                    return schemes.map { (fitness: Self.ridge($0), seconds: 0) }
                }, fitness: { _ in
                    XCTFail("the one-by-one fitness must not be called when evaluateAll is given")
                    return 0
                })
                let what = "seed \(seed), reuse \(reuse)"
                XCTAssertEqual(spread.evaluations.map(\.scheme), one.evaluations.map(\.scheme), what)
                XCTAssertEqual(spread.evaluations.map(\.fitness), one.evaluations.map(\.fitness), what)
                XCTAssertEqual(spread.evaluations.map(\.particle), one.evaluations.map(\.particle), what)
                XCTAssertEqual(spread.globalBest, one.globalBest, what)
                XCTAssertEqual(spread.trajectory, one.trajectory, what)
                XCTAssertEqual(spread.cacheHits, one.cacheHits, what)
                XCTAssertEqual(batches.count, o.iterations, what)
                // Each batch asks for every scheme its iteration computes, once.
                XCTAssertEqual(batches.joined().count, one.evaluations.count, what)
                if reuse { XCTAssertEqual(Set(batches.joined()).count, batches.joined().count, what) }
            }
        }
    }

    func testBatchedEvaluationMustAnswerEveryScheme() throws {
        var o = SwarmOptions()
        o.particles = 4; o.iterations = 2
        let swarm = try ParticleSwarm(upperBounds: [5, 5], options: o)
        XCTAssertThrowsError(try swarm.run(evaluateAll: { _ in [] }, fitness: { _ in 0 }))
    }
}
