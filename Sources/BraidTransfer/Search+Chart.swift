import Foundation

/// An SVG chart of a search: left, each source's depth L_j as a pale bar with the chosen
/// freeze depth k_j drawn over it; right, the validation fitness of every computed
/// evaluation in order, with the running best as a step line.
public func searchChart(_ record: SearchRecord, names: [String]) -> String {
    let width = 880.0, height = 320.0, pad = 48.0
    let leftW = 380.0, rightX = leftW + 2 * pad, rightW = width - rightX - pad / 2
    let plotH = height - 2 * pad
    var svg = """
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
    viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="12">
    <rect width="100%" height="100%" fill="white"/>
    <text x="\(pad)" y="20" font-size="14" font-weight="bold">Freeze depth chosen per source</text>
    <text x="\(rightX)" y="20" font-size="14" font-weight="bold">Validation fitness per evaluation</text>

    """
    // Left panel: horizontal bars, one row per source.
    let maxUnits = Double(max(record.unitCounts.max() ?? 1, 1))
    let rows = max(record.unitCounts.count, 1)
    let rowH = min(56.0, plotH / Double(rows))
    let nameW = 126.0, labelW = 92.0
    let barX = pad + nameW, barW = leftW - nameW - labelW
    for (j, units) in record.unitCounts.enumerated() {
        let y = pad + Double(j) * rowH + 8
        let k = j < record.chosenScheme.count ? record.chosenScheme[j] : 0
        let name = j < names.count ? names[j] : "source \(j + 1)"
        let full = barW * Double(units) / maxUnits, chosen = barW * Double(k) / maxUnits
        svg += "<text x=\"\(fmt(pad))\" y=\"\(fmt(y + rowH * 0.35))\">\(escapeXML(name.count > 17 ? name.prefix(16) + "\u{2026}" : name))</text>\n"
        svg += "<rect x=\"\(fmt(barX))\" y=\"\(fmt(y))\" width=\"\(fmt(full))\" height=\"\(fmt(rowH * 0.55))\" fill=\"#cfd8e3\"/>\n"
        svg += "<rect x=\"\(fmt(barX))\" y=\"\(fmt(y))\" width=\"\(fmt(chosen))\" height=\"\(fmt(rowH * 0.55))\" fill=\"#2b6cb0\"/>\n"
        svg += "<text x=\"\(fmt(barX + max(full, chosen) + 4))\" y=\"\(fmt(y + rowH * 0.4))\">\(k) / \(units) frozen</text>\n"
    }
    svg += "<text x=\"\(fmt(pad))\" y=\"\(fmt(height - pad / 2))\" fill=\"#555\">dark: frozen layer units; pale: the source's layer units</text>\n"

    // Right panel: fitness scatter and running best.
    let evals = record.evaluations
    let fits = evals.map(\.fitness)
    var lo = (fits.min() ?? 0), hi = (fits.max() ?? 1)
    if hi - lo < 0.02 { lo -= 0.01; hi += 0.01 }
    lo = max(0, lo - 0.02); hi = min(1, hi + 0.02)
    let count = max(evals.count, 2)
    func px(_ i: Int) -> Double { rightX + rightW * Double(i) / Double(count - 1) }
    func py(_ f: Double) -> Double { pad + plotH * (1 - (f - lo) / max(hi - lo, 1e-9)) }
    for t in 0...4 {
        let f = lo + (hi - lo) * Double(t) / 4
        svg += "<text x=\"\(fmt(rightX - 6))\" y=\"\(fmt(py(f) + 4))\" text-anchor=\"end\">\(String(format: "%.0f%%", f * 100))</text>\n"
        svg += "<line x1=\"\(fmt(rightX))\" y1=\"\(fmt(py(f)))\" x2=\"\(fmt(rightX + rightW))\" y2=\"\(fmt(py(f)))\" stroke=\"#eee\"/>\n"
    }
    svg += "<line x1=\"\(fmt(rightX))\" y1=\"\(fmt(pad))\" x2=\"\(fmt(rightX))\" y2=\"\(fmt(pad + plotH))\" stroke=\"#333\"/>\n"
    svg += "<line x1=\"\(fmt(rightX))\" y1=\"\(fmt(pad + plotH))\" x2=\"\(fmt(rightX + rightW))\" y2=\"\(fmt(pad + plotH))\" stroke=\"#333\"/>\n"
    svg += "<text x=\"\(fmt(rightX + rightW / 2))\" y=\"\(fmt(height - pad / 2 + 4))\" text-anchor=\"middle\">evaluation (\(evals.count) computed, \(record.cacheHits) cache hits)</text>\n"
    var best = -Double.infinity
    var path = ""
    for (i, e) in evals.enumerated() {
        let newBest = e.fitness > best
        if newBest { best = e.fitness }
        path += (i == 0 ? "M" : "L") + "\(fmt(px(i))),\(fmt(py(best))) "
        let title = "freeze \(e.scheme.map(String.init).joined(separator: ",")): \(String(format: "%.2f%%", e.fitness * 100)) in \(String(format: "%.1f", e.seconds))s"
        svg += "<circle cx=\"\(fmt(px(i)))\" cy=\"\(fmt(py(e.fitness)))\" r=\"3.5\" fill=\"\(newBest ? "#c05621" : "#718096")\"><title>\(escapeXML(title))</title></circle>\n"
    }
    if !path.isEmpty {
        svg += "<path d=\"\(path)\" fill=\"none\" stroke=\"#c05621\" stroke-width=\"1.5\"/>\n"
    }
    svg += "</svg>\n"
    return svg
}

private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

private func escapeXML(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}
