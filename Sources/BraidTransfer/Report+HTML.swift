import Foundation

/// Line and marker colours, one per table row (cycled).
private let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                       "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]

private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }

func escapeHTML(_ s: String) -> String {
    s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
        .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

extension ExperimentSummary {
    /// A self-contained HTML report: inline CSS and SVG, no scripts, no network.
    public func html() -> String {
        var body = "<h1>Experiment \(escapeHTML(config.name))</h1>\n"
        if !config.description.isEmpty { body += "<p>\(escapeHTML(config.description))</p>\n" }
        body += "<p>Sources: \(escapeHTML(config.sources.joined(separator: ", "))). Seeds: \(config.seeds.map(String.init).joined(separator: ", ")). "
        body += "\(config.training.epochs) epoch(s), batch \(config.training.batch), lr \(config.training.lr)"
        if config.trainSubset < 1 { body += String(format: ", %.0f%% of each training split", config.trainSubset * 100) }
        body += ".</p>\n"

        body += "<h2>Test accuracy (%), mean ± standard deviation over seeds</h2>\n<table class=\"acc\"><tr><th>method</th>"
        body += config.targets.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
        for row in rows {
            body += "<tr><td>\(escapeHTML(row))</td>"
            for t in config.targets {
                guard let e = entry(row: row, target: t) else { body += "<td></td>"; continue }
                let cls = isBest(row: row, target: t) ? " class=\"best\"" : (e.accuracies.isEmpty ? " class=\"na\"" : "")
                body += "<td\(cls)>\(escapeHTML(cellText(e)))</td>"
            }
            body += "</tr>\n"
        }
        body += "</table>\n<p class=\"note\">Highlighted: the best mean on each target.</p>\n"
        body += pairedHTML()

        body += "<h2>Training curves: validation accuracy per epoch (mean over seeds)</h2>\n<div class=\"charts\">\n"
        for t in config.targets {
            let c = curves(target: t)
            if !c.isEmpty { body += "<figure>\(curveChart(target: t, curves: c))</figure>\n" }
        }
        body += "</div>\n"

        if !depthCells.isEmpty {
            body += "<h2>Freeze depth per source</h2>\n<figure>\(depthChart())</figure>\n"
        }

        body += "<h2>Confusion matrix of the best method per target (test split, summed over seeds)</h2>\n<div class=\"charts\">\n"
        for t in config.targets {
            if let c = bestConfusion(target: t) {
                body += "<figure>\(confusionChart(target: t, row: c.row, classes: c.classes, matrix: c.matrix))</figure>\n"
            }
        }
        body += "</div>\n"

        body += "<h2>Cells</h2>\n<table><tr><th>target</th><th>method</th><th>seed</th><th>status</th><th>test accuracy (%)</th>"
        body += "<th>train s</th><th>search s</th><th>wall s</th><th>CPU s</th><th>run directory</th></tr>\n"
        for o in outcomes {
            let acc = o.metrics.map { Self.percent($0.testAccuracy) } ?? ""
            let status = o.status == .failed ? "failed: " + o.note : o.status.rawValue
            body += "<tr><td>\(escapeHTML(o.cell.target))</td><td>\(escapeHTML(o.cell.row))</td><td>\(o.cell.seed)</td>"
            body += "<td>\(escapeHTML(status))</td><td class=\"num\">\(acc)</td><td class=\"num\">\(Self.seconds(o.metrics?.seconds))</td>"
            body += "<td class=\"num\">\(Self.seconds(o.metrics?.searchSeconds))</td><td class=\"num\">\(Self.seconds(o.metrics?.wallSeconds))</td>"
            body += "<td class=\"num\">\(Self.seconds(o.metrics?.cpuSeconds))</td>"
            body += "<td><code>\(escapeHTML(o.cell.relativeDir))</code></td></tr>\n"
        }
        body += "</table>\n"
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Braid experiment \(escapeHTML(config.name))</title>
        <style>
        body { font-family: sans-serif; margin: 2em; color: #222; max-width: 1200px; }
        table { border-collapse: collapse; margin: 0.5em 0; }
        th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
        th { background: #f0f3f7; }
        td.num, table.acc td + td { text-align: right; font-variant-numeric: tabular-nums; }
        td.best { background: #d8ecd8; font-weight: bold; }
        td.na { color: #888; }
        td.worse { background: #f3d9d9; }
        .note { color: #555; font-size: 0.9em; }
        .charts { display: flex; flex-wrap: wrap; gap: 1em; }
        figure { margin: 0.5em 0; }
        </style></head>
        <body>
        \(body)</body></html>

        """
    }

    /// The paired-difference table, the CPU-seconds table and the accuracy-against-CPU charts.
    func pairedHTML() -> String {
        var body = ""
        if !paired.isEmpty {
            body += "<h2>Paired differences, percentage points [95% interval]</h2>\n<p class=\"note\">\(escapeHTML(Self.pairedNote))</p>\n"
            body += "<table class=\"acc\"><tr><th>method</th><th>against</th>"
            body += config.targets.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
            var pairs: [(String, Bool)] = []
            for d in paired where !pairs.contains(where: { $0 == (d.row, d.baseline == "ensemble") }) {
                pairs.append((d.row, d.baseline == "ensemble"))
            }
            for (row, vsEnsemble) in pairs {
                body += "<tr><td>\(escapeHTML(row))</td><td>\(vsEnsemble ? "ensemble" : "best single source")</td>"
                for t in config.targets {
                    guard let d = paired.first(where: { $0.row == row && $0.target == t && ($0.baseline == "ensemble") == vsEnsemble }) else {
                        body += "<td></td>"; continue
                    }
                    // Green: the interval is above 0; red: below.
                    let cls = d.low > 0 ? " class=\"best\"" : d.high < 0 ? " class=\"worse\"" : ""
                    let n = d.seeds == config.seeds.count ? "" : " (\(d.seeds)/\(config.seeds.count) seeds)"
                    let who = vsEnsemble ? "" : "<br><small>vs \(escapeHTML(d.baseline))</small>"
                    body += "<td\(cls)>\(escapeHTML(Self.pointsText(d) + n))\(who)</td>"
                }
                body += "</tr>\n"
            }
            body += "</table>\n"
        }
        let points = config.targets.map { t in
            rows.compactMap { r -> (row: String, cpu: Double, mean: Double, std: Double)? in
                guard let c = meanCPUSeconds(row: r, target: t), c > 0, let e = entry(row: r, target: t), !e.accuracies.isEmpty else { return nil }
                return (r, c, e.mean, e.std)
            }
        }
        if points.contains(where: { !$0.isEmpty }) {
            body += "<h2>Test accuracy against CPU seconds per cell (search included)</h2>\n<div class=\"charts\">\n"
            for (t, p) in zip(config.targets, points) where !p.isEmpty {
                body += "<figure>\(costChart(target: t, points: p))</figure>\n"
            }
            body += "</div>\n<p class=\"note\">Mean over seeds; bars: ± one standard deviation of the accuracy; CPU seconds on a log scale.</p>\n"
            body += "<h2>CPU seconds per cell, mean over seeds (search included)</h2>\n<table class=\"acc\"><tr><th>method</th>"
            body += config.targets.map { "<th>\(escapeHTML($0))</th>" }.joined() + "</tr>\n"
            for r in rows {
                body += "<tr><td>\(escapeHTML(r))</td>" + config.targets.map { t in
                    "<td>\(meanCPUSeconds(row: r, target: t).map { String(format: "%.1f", $0) } ?? "")</td>"
                }.joined() + "</tr>\n"
            }
            body += "</table>\n"
        }
        return body
    }

    /// A chart's title and its accuracy gridlines with their labels, one every `tick` from `lo`
    /// to `hi`, `y` placing an accuracy on the plot.
    func accuracyGrid(_ target: String, lo: Double, hi: Double, tick: Double, left: Double, plotW: Double,
                      _ y: (Double) -> Double) -> String {
        var svg = "<text x=\"\(fmt(left))\" y=\"20\" font-size=\"14\" font-weight=\"bold\">\(escapeHTML(target))</text>\n"
        for i in 0...Int(((hi - lo) / tick + 1e-9).rounded(.down)) {
            let v = lo + tick * Double(i)
            svg += "<line x1=\"\(fmt(left))\" y1=\"\(fmt(y(v)))\" x2=\"\(fmt(left + plotW))\" y2=\"\(fmt(y(v)))\" stroke=\"#e4e4e4\"/>\n"
            svg += "<text x=\"\(fmt(left - 6))\" y=\"\(fmt(y(v) + 4))\" text-anchor=\"end\">\(String(format: "%.0f%%", v * 100))</text>\n"
        }
        return svg
    }

    /// Mean test accuracy (± std) against mean CPU seconds (log scale), one marker per row.
    func costChart(target: String, points: [(row: String, cpu: Double, mean: Double, std: Double)]) -> String {
        let left = 56.0, top = 34.0, plotW = 300.0, plotH = 240.0
        let legendX = left + plotW + 16
        let height = max(plotH + top + 46, top + Double(points.count) * 16 + 20)
        var lo = points.map { $0.mean - $0.std }.min() ?? 0, hi = points.map { $0.mean + $0.std }.max() ?? 1
        lo = max(0, (lo * 20).rounded(.down) / 20); hi = min(1, (hi * 20).rounded(.up) / 20)
        if hi - lo < 0.05 { lo = max(0, hi - 0.05); hi = lo + 0.05 }
        let c0 = floor(log10(points.map(\.cpu).min()!)), c1 = max(ceil(log10(points.map(\.cpu).max()!)), c0 + 1)
        func x(_ c: Double) -> Double { left + plotW * (log10(c) - c0) / (c1 - c0) }
        func y(_ v: Double) -> Double { top + plotH * (1 - (v - lo) / (hi - lo)) }
        var svg = svgOpen(legendX + 230, height)
        svg += accuracyGrid(target, lo: lo, hi: hi, tick: hi - lo > 0.3 ? 0.1 : 0.05, left: left, plotW: plotW, y)
        for e in Int(c0)...Int(c1) {
            let c = pow(10, Double(e))
            svg += "<line x1=\"\(fmt(x(c)))\" y1=\"\(fmt(top))\" x2=\"\(fmt(x(c)))\" y2=\"\(fmt(top + plotH))\" stroke=\"#e4e4e4\"/>\n"
            svg += "<text x=\"\(fmt(x(c)))\" y=\"\(fmt(top + plotH + 16))\" text-anchor=\"middle\">\(String(format: "%g", c))</text>\n"
        }
        svg += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(top + plotH + 34))\" text-anchor=\"middle\">CPU seconds per cell</text>\n"
        svg += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
        for (i, p) in points.enumerated() {
            let colour = palette[rows.firstIndex(of: p.row).map { $0 % palette.count } ?? i % palette.count]
            let px = x(p.cpu)
            svg += "<line x1=\"\(fmt(px))\" y1=\"\(fmt(y(max(lo, p.mean - p.std))))\" x2=\"\(fmt(px))\" y2=\"\(fmt(y(min(hi, p.mean + p.std))))\" stroke=\"\(colour)\"/>\n"
            svg += "<circle cx=\"\(fmt(px))\" cy=\"\(fmt(y(p.mean)))\" r=\"4\" fill=\"\(colour)\"><title>\(escapeHTML(p.row)): \(String(format: "%.2f%% ± %.2f, %.1f CPU s", p.mean * 100, p.std * 100, p.cpu))</title></circle>\n"
            let ly = top + Double(i) * 16 + 6
            svg += "<circle cx=\"\(fmt(legendX + 6))\" cy=\"\(fmt(ly - 4))\" r=\"4\" fill=\"\(colour)\"/>\n"
            svg += "<text x=\"\(fmt(legendX + 16))\" y=\"\(fmt(ly))\">\(escapeHTML(p.row))</text>\n"
        }
        return svg + "</svg>"
    }

    /// Validation accuracy against epoch, one line per row.
    func curveChart(target: String, curves: [(row: String, values: [Double])]) -> String {
        let width = 560.0, plotH = 260.0, left = 52.0, top = 34.0, plotW = 300.0
        let legendX = left + plotW + 16
        let height = max(plotH + top + 46, top + Double(curves.count) * 16 + 20)
        let all = curves.flatMap(\.values)
        var lo = (all.min() ?? 0), hi = (all.max() ?? 1)
        lo = max(0, (lo * 10).rounded(.down) / 10); hi = min(1, (hi * 10).rounded(.up) / 10)
        if hi - lo < 0.1 { lo = max(0, hi - 0.1); hi = lo + 0.1 }
        let epochs = max(curves.map(\.values.count).max() ?? 1, 1)
        func x(_ e: Int) -> Double { epochs == 1 ? left + plotW / 2 : left + plotW * Double(e) / Double(epochs - 1) }
        func y(_ v: Double) -> Double { top + plotH * (1 - (v - lo) / (hi - lo)) }
        var svg = svgOpen(width, height)
        svg += accuracyGrid(target, lo: lo, hi: hi, tick: hi - lo > 0.5 ? 0.2 : 0.1, left: left, plotW: plotW, y)
        let tickStep = max(1, epochs / 8)
        for e in stride(from: 0, to: epochs, by: tickStep) {
            svg += "<text x=\"\(fmt(x(e)))\" y=\"\(fmt(top + plotH + 16))\" text-anchor=\"middle\">\(e + 1)</text>\n"
        }
        svg += "<text x=\"\(fmt(left + plotW / 2))\" y=\"\(fmt(top + plotH + 34))\" text-anchor=\"middle\">epoch</text>\n"
        svg += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(plotW))\" height=\"\(fmt(plotH))\" fill=\"none\" stroke=\"#888\"/>\n"
        for (i, c) in curves.enumerated() {
            let colour = palette[rows.firstIndex(of: c.row).map { $0 % palette.count } ?? i % palette.count]
            let points = c.values.enumerated().map { "\(fmt(x($0.offset))),\(fmt(y($0.element)))" }.joined(separator: " ")
            if c.values.count > 1 {
                svg += "<polyline points=\"\(points)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            }
            for (e, v) in c.values.enumerated() {
                svg += "<circle cx=\"\(fmt(x(e)))\" cy=\"\(fmt(y(v)))\" r=\"3\" fill=\"\(colour)\"><title>\(escapeHTML(c.row)) epoch \(e + 1): \(String(format: "%.2f%%", v * 100))</title></circle>\n"
            }
            let ly = top + Double(i) * 16 + 6
            svg += "<rect x=\"\(fmt(legendX))\" y=\"\(fmt(ly - 8))\" width=\"12\" height=\"4\" fill=\"\(colour)\"/>\n"
            svg += "<text x=\"\(fmt(legendX + 18))\" y=\"\(fmt(ly))\">\(escapeHTML(c.row))</text>\n"
        }
        return svg + "</svg>"
    }

    /// Per source, its layer units as a pale bar and each ensemble cell's chosen depth as a
    /// marker coloured by target.
    func depthChart() -> String {
        let names = config.sources.map(ExperimentConfig.shortName)
        let cells = depthCells
        let maxUnits = Double(max(cells.flatMap { $0.metrics?.unitCounts ?? [] }.max() ?? 1, 1))
        let left = 150.0, barW = 520.0, rowH = 44.0, top = 30.0
        let height = top + Double(names.count) * rowH + 30 + Double(config.targets.count) * 16
        var svg = svgOpen(left + barW + 150, height)
        svg += "<text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">Frozen layer units chosen (markers) of each source's layer units (bar)</text>\n"
        for (j, name) in names.enumerated() {
            let y = top + Double(j) * rowH
            let units = cells.compactMap { o -> Int? in
                guard let m = o.metrics, let k = o.cell.sourceIndices.firstIndex(of: j) else { return nil }
                return m.unitCounts[k]
            }.first ?? 0
            svg += "<text x=\"10\" y=\"\(fmt(y + 16))\">\(escapeHTML(name))</text>\n"
            svg += "<rect x=\"\(fmt(left))\" y=\"\(fmt(y + 4))\" width=\"\(fmt(barW * Double(units) / maxUnits))\" height=\"18\" fill=\"#dde4ec\"/>\n"
            svg += "<text x=\"\(fmt(left + barW * Double(units) / maxUnits + 6))\" y=\"\(fmt(y + 17))\">\(units) units</text>\n"
            for o in cells {
                guard let m = o.metrics, let k = o.cell.sourceIndices.firstIndex(of: j), k < m.depths.count else { continue }
                let t = config.targets.firstIndex(of: o.cell.target) ?? 0
                let cx = left + barW * Double(m.depths[k]) / maxUnits
                // Seeds that chose the same depth would hide each other: nudge each seed.
                let nudge = (Double(config.seeds.firstIndex(of: o.cell.seed) ?? 0) - Double(config.seeds.count - 1) / 2) * 7
                let shape = o.cell.method == "amcf" ? "circle" : "rect"
                let colour = palette[t % palette.count]
                let tip = "<title>\(escapeHTML(o.cell.target)) \(escapeHTML(o.cell.method)) seed \(o.cell.seed): \(m.depths[k]) / \(m.unitCounts[k])</title>"
                if shape == "circle" {
                    svg += "<circle cx=\"\(fmt(cx))\" cy=\"\(fmt(y + 13 + nudge))\" r=\"5\" fill=\"\(colour)\" fill-opacity=\"0.75\">\(tip)</circle>\n"
                } else {
                    svg += "<rect x=\"\(fmt(cx - 4))\" y=\"\(fmt(y + 9 + nudge))\" width=\"8\" height=\"8\" fill=\"\(colour)\">\(tip)</rect>\n"
                }
            }
        }
        let ly = top + Double(names.count) * rowH + 10
        for (t, target) in config.targets.enumerated() {
            let y = ly + Double(t) * 16
            svg += "<circle cx=\"16\" cy=\"\(fmt(y))\" r=\"5\" fill=\"\(palette[t % palette.count])\"/>"
            svg += "<text x=\"28\" y=\"\(fmt(y + 4))\">\(escapeHTML(target)) (circle: amcf, square: ensemble-searched or amcf-fixed)</text>\n"
        }
        return svg + "</svg>"
    }

    /// Row-normalised heatmap of a confusion matrix with the counts written in the cells.
    func confusionChart(target: String, row: String, classes: [String], matrix: [[Int]]) -> String {
        let k = max(classes.count, 1)
        let cell = min(36.0, 360.0 / Double(k)), left = 90.0, top = 52.0
        let size = cell * Double(k)
        var svg = svgOpen(left + size + 20, top + size + 40)
        svg += "<text x=\"10\" y=\"18\" font-size=\"14\" font-weight=\"bold\">\(escapeHTML(target)): \(escapeHTML(row))</text>\n"
        svg += "<text x=\"\(fmt(left + size / 2))\" y=\"38\" text-anchor=\"middle\">predicted</text>\n"
        svg += "<text x=\"10\" y=\"\(fmt(top + size / 2))\">true</text>\n"
        for (i, r) in matrix.enumerated() {
            let total = max(r.reduce(0, +), 1)
            let label = i < classes.count ? classes[i] : String(i)
            svg += "<text x=\"\(fmt(left - 4))\" y=\"\(fmt(top + cell * (Double(i) + 0.6)))\" text-anchor=\"end\">\(escapeHTML(String(label.prefix(10))))</text>\n"
            svg += "<text x=\"\(fmt(left + cell * (Double(i) + 0.5)))\" y=\"\(fmt(top + size + 14))\" text-anchor=\"middle\">\(escapeHTML(String(label.prefix(6))))</text>\n"
            for (j, n) in r.enumerated() {
                let f = Double(n) / Double(total)
                // White to dark blue by the row's share; light text on dark cells.
                let shade = { (c: Double) in Int((255 - (255 - c) * f).rounded()) }
                let fill = String(format: "#%02x%02x%02x", shade(31), shade(80), shade(160))
                let x = left + cell * Double(j), y = top + cell * Double(i)
                svg += "<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(cell))\" height=\"\(fmt(cell))\" fill=\"\(fill)\" stroke=\"#fff\"><title>true \(escapeHTML(label)), predicted \(escapeHTML(j < classes.count ? classes[j] : String(j))): \(n)</title></rect>\n"
                if n > 0 && cell >= 18 {
                    svg += "<text x=\"\(fmt(x + cell / 2))\" y=\"\(fmt(y + cell * 0.62))\" text-anchor=\"middle\" font-size=\"\(cell < 28 ? 9 : 11)\" fill=\"\(f > 0.5 ? "#fff" : "#222")\">\(n)</text>\n"
                }
            }
        }
        return svg + "</svg>"
    }

    private func svgOpen(_ w: Double, _ h: Double) -> String {
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    }
}
