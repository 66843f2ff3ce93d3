import BraidData
import BraidTensor
import Foundation

/// A cell's outcome as a worker rank reports it to rank 0, with the files of its run directory.
struct CellReport: Codable {
    var index: Int
    var status: String
    var note: String
    var metrics: CellMetrics?
    /// The cell directory's files by path relative to it.
    var files: [String: Data]
}

/// What a worker rank sends rank 0 when it is free: the report of its last cell, if any.
struct WorkerReady: Codable {
    var report: CellReport?
}

private enum CellTag {
    static let ready = 7101
    static let assignment = 7102
}

/// Rank 0's side of a distributed grid: the cells not yet handed out, and the outcomes.
private final class CellQueue: @unchecked Sendable {
    private let lock = NSLock()
    private var next = 0
    let cells: [(index: Int, cell: ExperimentCell)]
    private(set) var outcomes: [Int: CellOutcome] = [:]

    init(_ cells: [(index: Int, cell: ExperimentCell)]) { self.cells = cells }

    /// The position in `cells` of the next cell to run, or nil when all are handed out.
    func take() -> Int? {
        lock.withLock {
            guard next < cells.count else { return nil }
            next += 1
            return next - 1
        }
    }

    func record(_ index: Int, _ outcome: CellOutcome) { lock.withLock { outcomes[index] = outcome } }
}

extension ExperimentRunner {
    /// Runs `cells` (indices into `config.cells`) over `group`'s ranks, each cell on one rank:
    /// cells are handed out in order to whichever rank is free, rank 0 included (it runs its
    /// cells on a second thread while its main thread hands out the rest). Worker ranks run a
    /// cell in their own scratch `outDir` and send its directory's files to rank 0, which
    /// writes them where a single process would have. Returns the outcomes by cell index.
    func runSpread(_ cells: [(index: Int, cell: ExperimentCell)], group: any ProcessGroup,
                   start: @escaping (ExperimentCell) -> Void) throws -> [Int: CellOutcome] {
        let queue = CellQueue(cells)
        let box = UncheckedBox((runner: self, start: start))
        let localDone = DispatchSemaphore(value: 0)
        let worker = Thread {
            var opened: [String: OpenedData] = [:]
            while let k = queue.take() {
                let (index, cell) = queue.cells[k]
                box.value.start(cell)
                queue.record(index, box.value.runner.runOne(cell, opened: &opened))
            }
            localDone.signal()
        }
        worker.stackSize = 16 << 20
        worker.start()
        var active = group.size - 1
        var pause: UInt32 = 50
        while active > 0 {
            guard let message = try group.poll(tag: CellTag.ready) else {
                usleep(pause)
                pause = min(pause * 2, 5000)
                continue
            }
            pause = 50
            let ready = try JSONDecoder().decode(WorkerReady.self, from: Data(message.bytes))
            if let report = ready.report { try accept(report, from: message.source, queue: queue) }
            let k = queue.take()
            if let k { start(queue.cells[k].cell) }
            try group.send(Array(try JSONEncoder().encode(k.map { queue.cells[$0].index } ?? -1)),
                           to: message.source, tag: CellTag.assignment)
            if k == nil { active -= 1 }
        }
        localDone.wait()
        return queue.outcomes
    }

    /// A worker rank's side: asks rank 0 for cells until it has none left, reporting each
    /// finished cell with its files.
    func serveCells(group: any ProcessGroup) throws {
        var opened: [String: OpenedData] = [:]
        var report: CellReport?
        while true {
            try group.send(Array(try JSONEncoder().encode(WorkerReady(report: report))), to: 0, tag: CellTag.ready)
            let index = try JSONDecoder().decode(Int.self, from: Data(try group.receive(tag: CellTag.assignment).bytes))
            guard index >= 0 else { return }
            let cell = config.cells[index]
            let outcome = runOne(cell, opened: &opened)
            let dir = runDir(cell)
            report = CellReport(index: index, status: outcome.status.rawValue, note: outcome.note, metrics: outcome.metrics,
                                files: try filesBelow(dir))
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    /// Runs one cell here, turning an error into a failed outcome.
    func runOne(_ cell: ExperimentCell, opened: inout [String: OpenedData]) -> CellOutcome {
        do {
            let data: OpenedData
            if let d = opened[cell.target] { data = d } else {
                data = try DataCatalog.open(cell.target, dataFolder: cacheDir + "/data")
                for (path, reason) in data.skipped { events?(.warning("skipping \(path): \(reason)")) }
                opened[cell.target] = data
            }
            let metrics = try runCell(cell, data: data)
            return CellOutcome(cell: cell, status: .done, metrics: metrics, note: "", skipped: false)
        } catch {
            events?(.warning("cell \(cell.relativeDir) failed: \(error)"))
            return CellOutcome(cell: cell, status: .failed, note: String(describing: error), skipped: false)
        }
    }

    /// Writes a worker's cell files under rank 0's `outDir` and records its outcome.
    private func accept(_ report: CellReport, from rank: Int, queue: CellQueue) throws {
        let cell = config.cells[report.index]
        let dir = runDir(cell)
        for (name, data) in report.files.sorted(by: { $0.key < $1.key }) {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try writeAtomically(data, to: path)
        }
        let status = CellOutcome.Status(rawValue: report.status) ?? .failed
        queue.record(report.index, CellOutcome(cell: cell, status: status, metrics: report.metrics,
                                               note: status == .failed ? "rank \(rank): \(report.note)" : report.note,
                                               skipped: false))
    }

    /// Every regular file under `dir`, by path relative to it.
    private func filesBelow(_ dir: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        guard let walker = FileManager.default.enumerator(atPath: dir) else { return files }
        while let name = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let path = dir + "/" + name
            if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue {
                files[name] = FileManager.default.contents(atPath: path)
            }
        }
        return files
    }
}

/// Hands a non-Sendable reference to the thread that runs rank 0's own cells; the runner's
/// state it reads there is immutable while the grid runs.
private struct UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
