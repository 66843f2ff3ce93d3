import BraidGraph
import BraidTensor
import Foundation

/// Every supported layer class, one table per family.
let layerTable: [String: LayerTranslator] = {
    var t: [String: LayerTranslator] = [:]
    for family in [coreLayers, activationLayers, convLayers, poolLayers, shapeLayers, mergeLayers] {
        t.merge(family) { a, _ in a }
    }
    return t
}()

/// The Keras layer classes the importer translates (besides InputLayer and nested models).
public var supportedKerasLayers: [String] { layerTable.keys.sorted() }

/// Translates a model config, with its weights, into IR nodes.
struct ModelTranslator {
    let b = GraphBuilder()
    let file: String?
    let kerasMajor: Int
    /// Layer calls made so far: a nested model called k times per level re-translates its
    /// layers k^depth times, so a small hostile config could otherwise run for ever.
    private let calls = CallCount()

    /// Models nested deeper than this are refused (real models nest two or three deep).
    static let maxNesting = 32
    /// At most this many nested-model calls are translated in one import (each re-reads
    /// the nested model's config; real models make a handful).
    static let maxNestedModelCalls = 1_000
    /// At most this many layer calls are translated in one import (real models make a few
    /// thousand).
    static let maxLayerCalls = 20_000

    init(file: String?, kerasMajor: Int) {
        self.file = file
        self.kerasMajor = kerasMajor
    }

    /// Builds the top-level model and returns the graph.
    func translate(_ spec: ModelSpec, scope: WeightScope, metadata: [String: String]) throws -> Graph {
        var decls: [ValueDecl] = []
        let outs = try build(spec, inputs: nil, scope: scope, keyPrefix: "", depth: 0, graphInputs: &decls)
        var outputDecls: [ValueDecl] = []
        var seen = Set(decls.map(\.name))
        for o in outs {
            var t = b.channelsLast(o)
            if seen.contains(t.name) {
                t.name = b.add1(.identity, [t.name], name: t.name + "/output", source: "Output")
            }
            seen.insert(t.name)
            outputDecls.append(ValueDecl(name: t.name, dtype: .float32, shape: dims(t.shape, name: t.name)))
        }
        return Graph(name: spec.name, inputs: decls, outputs: outputDecls, initializers: b.initializers,
                     nodes: b.nodes, metadata: metadata)
    }

    private func dims(_ shape: [Int?], name: String) -> [Dim] {
        shape.enumerated().map { i, d in
            if i == 0 { return .symbol("N") }
            return d.map(Dim.fixed) ?? .symbol("\(name)_d\(i)")
        }
    }

    /// A graph input for a Keras input of shape `[batch, ...]` (as the config states it).
    private func graphInput(name: String, shape: [Int?], decls: inout [ValueDecl]) -> KTensor {
        b.reserve(name)
        decls.append(ValueDecl(name: name, dtype: .float32, shape: dims(shape, name: name)))
        return KTensor(name: name, shape: [nil] + shape.dropFirst())
    }

    private func inputShape(_ layer: LayerSpec) throws -> [Int?] {
        let c = layer.config
        let shape: [Int?]
        if let s = c.array("batch_shape") ?? c.array("batch_input_shape") {
            shape = s.map { ($0 as? NSNumber)?.intValue }
        } else if let s = c.array("input_shape") ?? c.array("shape") {
            shape = [nil] + s.map { ($0 as? NSNumber)?.intValue }
        } else {
            throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                             "input layer has no shape")
        }
        try checkInputShape(shape, what: "input layer '\(layer.name)'")
        return shape
    }

    /// Layers compute output sizes from the declared input sizes, so absurd ones (negative,
    /// or large enough to overflow a product) are refused here.
    private func checkInputShape(_ shape: [Int?], what: String) throws {
        guard shape.count <= 8, shape.dropFirst().allSatisfy({ $0 == nil || (1...(1 << 24)).contains($0!) }) else {
            throw KerasError(file: file, "\(what) has shape \(shape.map { $0.map(String.init) ?? "None" }); expected at most 8 axes of 1...\(1 << 24)")
        }
    }

    /// Translates one model. `inputs` is nil for the top level (graph inputs are made).
    private func build(_ spec: ModelSpec, inputs: [KTensor]?, scope: WeightScope, keyPrefix: String,
                       depth: Int, graphInputs: inout [ValueDecl]) throws -> [KTensor] {
        guard depth <= ModelTranslator.maxNesting else {
            throw KerasError(file: file, "model '\(spec.name)' is nested more than \(ModelTranslator.maxNesting) models deep")
        }
        var keys = Keras3Keys()
        let layerKeys = spec.layers.map { keys.next(className: $0.className) }
        if spec.isSequential {
            var x: KTensor
            if let given = inputs {
                guard given.count == 1 else { throw KerasError(file: file, "Sequential model '\(spec.name)' called with \(given.count) inputs") }
                x = given[0]
            } else {
                guard let shape = spec.sequentialInputShape else {
                    throw KerasError(file: file, "Sequential model '\(spec.name)' states no input shape")
                }
                try checkInputShape([nil] + shape, what: "Sequential model '\(spec.name)' input")
                x = graphInput(name: spec.sequentialInputName ?? "input", shape: [nil] + shape, decls: &graphInputs)
            }
            for (i, layer) in spec.layers.enumerated() {
                let out = try call(layer, [x], scope: scope.child(layer: layer.name, keras3Key: layerKeys[i]),
                                   keyPrefix: keyPrefix, depth: depth, graphInputs: &graphInputs)
                guard out.count == 1 else {
                    throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                                     "a Sequential layer must have one output, this one has \(out.count)")
                }
                x = out[0]
            }
            return [x]
        }
        let byName = Dictionary(spec.layers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var produced: [String: [Int: [KTensor]]] = [:]
        let inputLayers = spec.inputs.map(\.layer)
        if let given = inputs, given.count != spec.inputs.count {
            throw KerasError(file: file, "model '\(spec.name)' takes \(spec.inputs.count) inputs, called with \(given.count)")
        }
        for (i, ref) in spec.inputs.enumerated() {
            guard let layer = byName[ref.layer] else {
                throw KerasError(file: file, "model '\(spec.name)': input_layers names '\(ref.layer)', which is not a layer of the model")
            }
            let t = try inputs?[i] ?? graphInput(name: layer.name, shape: inputShape(layer), decls: &graphInputs)
            produced[ref.layer, default: [:]][ref.node] = [t]
        }
        var pending: [(index: Int, call: Int)] = []
        for (i, layer) in spec.layers.enumerated() where !inputLayers.contains(layer.name) {
            for (c, refs) in layer.calls.enumerated() {
                for r in refs where byName[r.layer] == nil {
                    throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                                     "takes its input from '\(r.layer)', which is not a layer of the model")
                }
                pending.append((i, c))
            }
        }
        while !pending.isEmpty {
            var progressed = false
            var rest: [(index: Int, call: Int)] = []
            for p in pending {
                let layer = spec.layers[p.index]
                let refs = layer.calls[p.call]
                let args = refs.compactMap { r in produced[r.layer]?[r.node].flatMap { r.tensor < $0.count ? $0[r.tensor] : nil } }
                guard args.count == refs.count else { rest.append(p); continue }
                let out = try call(layer, args, callIndex: p.call, scope: scope.child(layer: layer.name, keras3Key: layerKeys[p.index]),
                                   keyPrefix: keyPrefix, depth: depth, graphInputs: &graphInputs)
                produced[layer.name, default: [:]][p.call + nodeOffset(layer)] = out
                progressed = true
            }
            if !progressed {
                let layer = spec.layers[rest[0].index]
                throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                                 "its inputs are never produced (a cycle or a reference to a missing call)")
            }
            pending = rest
        }
        return try spec.outputs.map { r in
            guard let t = produced[r.layer]?[r.node], r.tensor < t.count else {
                throw KerasError(file: file, "model '\(spec.name)': output_layers names '\(r.layer)' call \(r.node), which is never produced")
            }
            return t[r.tensor]
        }
    }

    /// Keras numbers a nested Functional model's calls from 1 (its node 0 links its own
    /// inputs to outputs); Keras 2 did the same for nested Sequential models.
    private func nodeOffset(_ layer: LayerSpec) -> Int {
        switch layer.className {
        case "Functional", "Model": return 1
        case "Sequential": return kerasMajor < 3 ? 1 : 0
        default: return 0
        }
    }

    /// One call of one layer (or nested model).
    private func call(_ layer: LayerSpec, _ args: [KTensor], callIndex: Int = 0, scope: WeightScope, keyPrefix: String,
                      depth: Int, graphInputs: inout [ValueDecl]) throws -> [KTensor] {
        calls.value += 1
        guard calls.value <= ModelTranslator.maxLayerCalls else {
            throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                             "the model makes more than \(ModelTranslator.maxLayerCalls) layer calls (nested models called many times?)")
        }
        let key = keyPrefix + "/" + layer.name
        if ModelSpec.modelClasses.contains(layer.className) {
            calls.nestedModels += 1
            guard calls.nestedModels <= ModelTranslator.maxNestedModelCalls else {
                throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position,
                                 "the model calls nested models more than \(ModelTranslator.maxNestedModelCalls) times")
            }
            let inner: ModelSpec
            do { inner = try ModelSpec(layer.entry) } catch let e as KerasError {
                throw KerasError(file: file, layer: layer.name, layerClass: layer.className, position: layer.position, e.message)
            }
            return try build(inner, inputs: args, scope: scope, keyPrefix: key, depth: depth + 1, graphInputs: &graphInputs)
        }
        let ctx = LayerContext(spec: layer, b: b, scope: scope, key: key, kerasMajor: kerasMajor, file: file)
        if layer.className == "InputLayer" { return [try ctx.one(args)] }
        if layer.className == "Lambda" {
            throw ctx.err("Lambda layers hold Python code and cannot be imported")
        }
        if layer.isOperation {
            guard let translate = operationTable[layer.className] else {
                throw ctx.err("unsupported Keras operation '\(layer.className)' (module \(layer.entry.string("module") ?? "?"))")
            }
            let operands = callIndex < layer.operands.count ? layer.operands[callIndex] : args.map { _ in .tensor }
            return try translate(ctx, try operationArguments(ctx, operands, args))
        }
        guard let translate = layerTable[layer.className] else {
            throw ctx.err("unsupported layer class '\(layer.className)'")
        }
        return try translate(ctx, args)
    }
}

/// A counter shared by the copies of a `ModelTranslator`.
private final class CallCount {
    var value = 0
    var nestedModels = 0
}
