import BraidONNX
import BraidTensor
import Foundation
import XCTest

/// `braid inspect --check` lists every node Braid cannot run; `braid run` still stops at the
/// first with one error line.
extension CLITests {
    func testInspectCheckListsEveryUnsupportedNode() throws {
        let dir = try tempDir()
        func value(_ name: String) -> ONNXValueInfoProto {
            ONNXValueInfoProto(name: name, type: .tensor(elemType: ONNXDataType.float.rawValue, shape: [.value(1), .value(4)]))
        }
        func node(_ name: String, _ op: String, _ inputs: [String], _ output: String, domain: String = "") -> ONNXNodeProto {
            ONNXNodeProto(name: name, opType: op, domain: domain, inputs: inputs, outputs: [output], attributes: [])
        }
        var m = ONNXModelProto()
        m.irVersion = 8
        m.opsetImport = [("", 17), ("com.example", 3)]
        m.graph.name = "two_unsupported"
        m.graph.inputs = [value("x")]
        m.graph.outputs = [value("y")]
        m.graph.nodes = [
            node("first_relu", "Relu", ["x"], "a"),
            node("fancy", "FancyOp", ["a"], "b"),
            // Supported, but fed by an unsupported node: not listed.
            node("after_fancy", "Relu", ["b"], "c"),
            node("frob", "Frob", ["x"], "d", domain: "com.example"),
            node("sum", "Add", ["c", "d"], "y"),
        ]
        let path = dir + "/two.onnx"
        try Data(m.serialized()).write(to: URL(fileURLWithPath: path))

        let r = try braid(["inspect", "--check", path])
        XCTAssertEqual(r.status, 1, r.out + r.err)
        XCTAssertTrue(r.out.contains("2 nodes Braid cannot run"), r.out)
        XCTAssertTrue(r.out.contains("node 'fancy': op 'FancyOp' (domain 'ai.onnx', opset 17): unsupported op"), r.out)
        XCTAssertTrue(r.out.contains("node 'frob': op 'Frob' (domain 'com.example', opset 3)"), r.out)
        for quiet in ["first_relu", "after_fancy", "'sum'"] { XCTAssertFalse(r.out.contains(quiet), "\(quiet) listed: \(r.out)") }

        let j = try braid(["inspect", "--check", "--json", path])
        XCTAssertEqual(j.status, 1)
        let obj = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(j.out.utf8)) as? [String: Any])
        XCTAssertEqual(obj["supported"] as? Bool, false)
        let listed = try XCTUnwrap(obj["unsupported"] as? [[String: Any]])
        XCTAssertEqual(listed.map { $0["node"] as? String }, ["fancy", "frob"])
        XCTAssertEqual(listed.map { $0["opset"] as? Int }, [17, 3])

        // `braid run` names only the first.
        try Npy.write(Tensor(zeros: [1, 4]), path: dir + "/x.npy")
        try assertFails(["run", path, "--input", dir + "/x.npy", "--output", dir + "/y.npy"], mentions: ["fancy", "FancyOp"])
        let run = try braid(["run", path, "--input", dir + "/x.npy", "--output", dir + "/y.npy"])
        XCTAssertFalse(run.err.contains("frob"), run.err)

        // A model whose every node runs passes the check.
        m.opsetImport = [("", 17)]
        m.graph.nodes = [node("only_relu", "Relu", ["x"], "y")]
        try Data(m.serialized()).write(to: URL(fileURLWithPath: dir + "/ok.onnx"))
        let ok = try braid(["inspect", "--check", dir + "/ok.onnx"])
        XCTAssertEqual(ok.status, 0, ok.out + ok.err)
        XCTAssertTrue(ok.out.contains("all 1 nodes supported"), ok.out)
    }
}
