import BraidKernels
import Dispatch

/// The matrix product a convolution amounts to, per group: `[m, k] x [k, n]` with m the
/// output channels per group, n the output pixels times the batch, k the input channels per
/// group times the kernel's area.
struct GEMMShape: Hashable {
    var m: Int
    var n: Int
    var k: Int
    var groups: Int

    var flops: Double { 2 * Double(m) * Double(n) * Double(k) * Double(groups) }
    var label: String { "\(m)x\(n)x\(k)" + (groups > 1 ? " x\(groups) groups" : "") }

    /// Floats the three operands hold.
    var floats: Int { groups * (m * k + k * n + m * n) }

    /// GFLOP/s of bare `cblas_sgemm` calls on preallocated operands (one call per group, beta
    /// 0), with OpenBLAS on its own threads, one per core: the best of at least five timed runs after one
    /// untimed run, more while they add up to less than 200 ms.
    func sgemmRate(threads: Int) -> Double {
        let a = UnsafeMutablePointer<Float>.allocate(capacity: groups * m * k)
        let b = UnsafeMutablePointer<Float>.allocate(capacity: groups * k * n)
        let c = UnsafeMutablePointer<Float>.allocate(capacity: groups * m * n)
        defer { a.deallocate(); b.deallocate(); c.deallocate() }
        for i in 0..<(groups * m * k) { a[i] = Float(i % 17 - 8) * 0.01 }
        for i in 0..<(groups * k * n) { b[i] = Float(i % 13 - 6) * 0.01 }
        c.initialize(repeating: 0, count: groups * m * n)
        func run() {
            for g in 0..<groups {
                openBLASThreadedSGEMM(threads: threads, m: m, n: n, k: k, a: a + g * m * k, b: b + g * k * n,
                                      c: c + g * m * n)
            }
        }
        run()
        var times: [Double] = []
        var total = 0.0
        while times.count < 5 || (total < 0.2 && times.count < 500) {
            let t0 = DispatchTime.now().uptimeNanoseconds
            run()
            let s = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            times.append(s)
            total += s
        }
        return flops / times.min()! / 1e9
    }
}
