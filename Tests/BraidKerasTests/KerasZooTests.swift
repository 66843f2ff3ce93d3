import BraidGraph
import BraidKeras
import BraidTensor
import XCTest

/// The fixture zoo made by tools/make-keras-fixtures (Keras 3.15.1, jax backend): each model
/// imported from its Keras 3 .h5 and from its .keras file, run, and compared with
/// Keras's own outputs.
final class KerasZooTests: XCTestCase {
    func check(_ name: String) throws {
        let inputs = try KerasFixtures.arrays(name, "in")
        let expected = try KerasFixtures.arrays(name, "out")
        XCTAssertFalse(inputs.isEmpty, "\(name): no input fixtures")
        XCTAssertFalse(expected.isEmpty, "\(name): no output fixtures")
        for ext in ["h5", "keras"] {
            let graph = try importKeras(path: KerasFixtures.path("\(name).\(ext)"))
            try assertMatchesKeras(graph, inputs: inputs, expected: expected, "\(name).\(ext)")
        }
    }

    func testSequentialMLP() throws { try check("seq_mlp") }
    func testMiniXceptionPattern() throws { try check("func_xception") }
    func testConvolutionVariantsThenFlattenDense() throws { try check("seq_convs") }
    func testConv1DAndPooling1D() throws { try check("func_conv1d") }
    func testActivations() throws { try check("func_activations") }
    func testNormalisationLayers() throws { try check("seq_norms") }
    func testPooling2D() throws { try check("func_pooling") }
    func testDataMovementLayers() throws { try check("func_shapes") }
    func testMergesWithSeveralInputsAndOutputs() throws { try check("func_merges") }
    func testNestedModelsAndSharedLayer() throws { try check("func_nested") }
    /// LayerScale and StochasticDepth (ConvNeXt) and CustomScaleLayer (InceptionResNetV2),
    /// which keras.applications registers itself.
    func testLayersKerasApplicationsRegisters() throws { try check("func_applications_layers") }

    func testConfigPlusWeightsOnlyFile() throws {
        let graph = try importKeras(configPath: KerasFixtures.path("seq_mlp.json"),
                                    weightsPath: KerasFixtures.path("seq_mlp.weights.h5"))
        try assertMatchesKeras(graph, inputs: try KerasFixtures.arrays("seq_mlp", "in"),
                               expected: try KerasFixtures.arrays("seq_mlp", "out"), "seq_mlp json+weights")
    }
}
