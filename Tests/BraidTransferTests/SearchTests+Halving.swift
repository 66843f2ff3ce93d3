import BraidData
import BraidGraph
import BraidTensor
import BraidTraining
import Foundation
import XCTest
@testable import BraidTransfer

/// Successive halving over freeze schemes: its plan, its candidates, and a search whose rungs
/// keep the best of the rung before, with and without the prefix caches alike.
extension SearchTests {
    func testHalvingPlan() {
        let p = HalvingPlan(candidates: 28, eta: 3, epochs: 5)
        XCTAssertEqual(p.survivors, [28, 9, 3])
        XCTAssertEqual(p.budgets.count, 3)
        for (b, e) in zip(p.budgets, [5.0 / 27, 5.0 / 9, 5.0 / 3]) { XCTAssertEqual(b, e, accuracy: 1e-12) }
        XCTAssertEqual(p.cost, 28 * 5.0 / 27 + 9 * (5.0 / 9 - 5.0 / 27) + 3 * (5.0 / 3 - 5.0 / 9), accuracy: 1e-9)
        XCTAssertLessThan(p.cost, 0.05 * 10 * 5 * 5, "under a twentieth of the reference swarm's 250 epochs")
        let one = HalvingPlan(candidates: 1, eta: 3, epochs: 5)
        XCTAssertEqual(one.survivors, [1])
        XCTAssertEqual(one.budgets.count, 1)
        XCTAssertEqual(one.budgets[0], 5.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(HalvingPlan(candidates: 4, eta: 2, epochs: 2).survivors, [4, 2])
    }

    func testHalvingSearchKeepsTheBestOfEachRung() throws {
        let (dir, d) = try twoCNNSourcesOnDigits("halving")
        var records: [SearchRecord] = []
        for cached in [true, false] {
            let (models, training) = try searchSetup(dir, d, cached: cached)
            var options = SearchOptions()
            options.strategy = .halving
            options.halvingCandidates = 8; options.halvingEta = 2; options.swarm.seed = 4
            options.epochs = 2
            let search = try LayerSearch(models: models, classes: d.classes, training: training, options: options)
            let candidates = search.halvingCandidates(count: 8)
            XCTAssertEqual(Set(candidates).count, candidates.count)
            XCTAssertTrue(candidates.contains([0, 0]))
            XCTAssertTrue(candidates.allSatisfy { zip($0, search.unitCounts).allSatisfy { $0 >= 0 && $0 <= $1 } })
            XCTAssertEqual(search.halvingCandidates(count: 8), candidates, "seeded")
            let r = try search.run(train: d.train, validation: d.validation, runDir: dir + (cached ? "/c" : "/u"))
            let plan = HalvingPlan(candidates: candidates.count, eta: 2, epochs: 2)
            XCTAssertEqual(r.evaluations.count, plan.survivors.reduce(0, +))
            // Each rung scores exactly the best of the rung before (ties: the earlier one).
            for rung in 1..<plan.survivors.count {
                let before = r.evaluations.filter { $0.iteration == rung - 1 }.enumerated()
                    .sorted { $0.element.fitness != $1.element.fitness ? $0.element.fitness > $1.element.fitness : $0.offset < $1.offset }
                    .prefix(plan.survivors[rung]).map(\.element.scheme)
                XCTAssertEqual(r.evaluations.filter { $0.iteration == rung }.map(\.scheme), Array(before), "rung \(rung)")
            }
            let last = r.evaluations.filter { $0.iteration == plan.survivors.count - 1 }
            XCTAssertEqual(r.chosenFitness, last.map(\.fitness).max())
            XCTAssertEqual(r.chosenScheme, last.first { $0.fitness == r.chosenFitness }?.scheme)
            XCTAssertGreaterThan(r.cpuSeconds ?? 0, 0)
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + (cached ? "/c" : "/u") + "/search.json"))
            records.append(r)
        }
        XCTAssertEqual(records[0].evaluations.map(\.fitness), records[1].evaluations.map(\.fitness),
                       "the prefix caches change no score")
        XCTAssertEqual(records[0].chosenScheme, records[1].chosenScheme)
    }
}
