import BraidGraph
import BraidTensor
import XCTest
import BraidTestSupport

final class LoweringResizeTests: XCTestCase {
    struct ResizeCase {
        var name: String
        var params: ResizeParams
        var xShape: [Int], x: [Double], float: Bool
        var roi: [Float]?, scales: [Float]?, sizes: [Int]?
        var yShape: [Int], y: [Double]
    }

    // Made with onnx 1.23.2's ReferenceEvaluator on a single opset-19 Resize node
    // (tools/fixtures/gen_resize_literals.py in the report); "negative axes" ran there as axes [3, 2].
    let cases: [ResizeCase] = [
        ResizeCase(name: "nearest half_pixel round_prefer_floor up", params: .init(mode: .nearest, coordinate: .halfPixel, nearest: .roundPreferFloor),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: [1.0, 1.0, 1.7, 2.3], sizes: nil,
                   yShape: [1, 1, 5, 6], y: [0.5, 0.5, 1.59, 1.59, 1.59, 1.1, 0.5, 0.5, 1.59, 1.59, 1.59, 1.1, -1.1, -1.1, -0.8, -0.8, -0.8, 1.49, -1.98, -1.98, 1.28, 1.28, 1.28, 1.19, -1.98, -1.98, 1.28, 1.28, 1.28, 1.19]),
        ResizeCase(name: "nearest asymmetric floor sizes", params: .init(mode: .nearest, coordinate: .asymmetric, nearest: .floor),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: nil, sizes: [1, 1, 7, 5],
                   yShape: [1, 1, 7, 5], y: [0.5, 0.5, 1.59, 1.59, 1.1, 0.5, 0.5, 1.59, 1.59, 1.1, 0.5, 0.5, 1.59, 1.59, 1.1, -1.1, -1.1, -0.8, -0.8, 1.49, -1.1, -1.1, -0.8, -0.8, 1.49, -1.98, -1.98, 1.28, 1.28, 1.19, -1.98, -1.98, 1.28, 1.28, 1.19]),
        ResizeCase(name: "nearest align_corners round_prefer_ceil", params: .init(mode: .nearest, coordinate: .alignCorners, nearest: .roundPreferCeil),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: nil, sizes: [1, 1, 5, 6],
                   yShape: [1, 1, 5, 6], y: [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 5.0, 6.0, 6.0, 7.0, 7.0, 8.0, 9.0, 10.0, 10.0, 11.0, 11.0, 12.0, 9.0, 10.0, 10.0, 11.0, 11.0, 12.0, 13.0, 14.0, 14.0, 15.0, 15.0, 16.0]),
        ResizeCase(name: "nearest half_pixel ceil down", params: .init(mode: .nearest, coordinate: .halfPixel, nearest: .ceil),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: [1.0, 1.0, 0.6, 0.8], sizes: nil,
                   yShape: [1, 1, 2, 3], y: [6.0, 7.0, 8.0, 10.0, 11.0, 12.0]),
        ResizeCase(name: "nearest asymmetric round_prefer_floor down", params: .init(mode: .nearest, coordinate: .asymmetric, nearest: .roundPreferFloor),
                   xShape: [1, 2, 5, 5], x: [-0.13, -0.79, -0.89, -0.98, -0.22, 0.02, 0.21, 1.98, 1.17, 0.49, 1.96, -1.14, -1.36, 0.45, -1.82, -1.86, 0.06, -0.14, 1.67, 0.52, 0.06, -0.01, -1.01, -1.95, -1.23, 0.77, -1.2, -0.52, -1.99, 1.32, -1.38, -0.93, 1.52, 0.04, 1.39, 0.56, 0.97, -1.63, 0.16, 0.03, 1.49, -0.55, 0.39, -1.76, -0.45, -0.71, -1.4, 1.27, -0.48, 1.91], float: true,
                   roi: nil, scales: [1.0, 1.0, 0.5, 0.75], sizes: nil,
                   yShape: [1, 2, 2, 3], y: [-0.13, -0.79, -0.98, 1.96, -1.14, 0.45, 0.77, -1.2, -1.99, 0.56, 0.97, 0.16]),
        ResizeCase(name: "linear half_pixel up", params: .init(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: [1.0, 1.0, 2.0, 1.5], sizes: nil,
                   yShape: [1, 1, 6, 4], y: [0.5, 1.0450001, 1.5083333, 1.1816667, 0.099999994, 0.54625, 1.0266666, 1.1633333, -0.70000005, -0.45125002, 0.06333333, 1.1266667, -1.32, -0.8, 0.0024999902, 1.1325, -1.76, -0.5, 0.84416664, 1.1808333, -1.98, -0.35000002, 1.265, 1.205]),
        ResizeCase(name: "linear align_corners sizes", params: .init(mode: .linear, coordinate: .alignCorners, nearest: .roundPreferFloor),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: nil, sizes: [1, 1, 5, 7],
                   yShape: [1, 1, 5, 7], y: [0.5, 0.86333334, 1.2266667, 1.59, 1.4266667, 1.2633333, 1.1, -0.3, -0.068333335, 0.16333334, 0.395, 0.695, 0.995, 1.2950001, -1.1, -1.0, -0.90000004, -0.8, -0.036666673, 0.7266667, 1.49, -1.54, -0.9466667, -0.35333335, 0.23999998, 0.6066667, 0.97333336, 1.34, -1.98, -0.8933334, 0.19333331, 1.28, 1.25, 1.22, 1.19]),
        ResizeCase(name: "linear asymmetric down", params: .init(mode: .linear, coordinate: .asymmetric, nearest: .roundPreferFloor),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: [1.0, 1.0, 0.6, 0.6], sizes: nil,
                   yShape: [1, 1, 2, 2], y: [1.0, 2.6666665, 7.6666665, 9.333333]),
        ResizeCase(name: "linear pytorch_half_pixel to width 1", params: .init(mode: .linear, coordinate: .pytorchHalfPixel, nearest: .roundPreferFloor),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: nil, sizes: [1, 1, 1, 6],
                   yShape: [1, 1, 1, 6], y: [1.0, 1.5, 2.1666667, 2.8333333, 3.5, 4.0]),
        ResizeCase(name: "linear half_pixel_symmetric", params: .init(mode: .linear, coordinate: .halfPixelSymmetric, nearest: .roundPreferFloor),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: [1.0, 1.0, 2.3, 1.7], sizes: nil,
                   yShape: [1, 1, 6, 5], y: [0.5, 0.9488236, 1.59, 1.3017647, 1.1, -0.056521725, 0.27915606, 0.7586957, 1.0392584, 1.2356522, -0.7521739, -0.5579284, -0.2804348, 0.7111253, 1.4052174, -1.2913043, -0.9028133, -0.3478261, 0.6948849, 1.4247826, -1.6739131, -0.7554987, 0.5565218, 0.9905371, 1.2943479, -1.98, -0.63764703, 1.28, 1.2270589, 1.19]),
        ResizeCase(name: "linear half_pixel two channels", params: .init(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor),
                   xShape: [1, 2, 5, 5], x: [-0.13, -0.79, -0.89, -0.98, -0.22, 0.02, 0.21, 1.98, 1.17, 0.49, 1.96, -1.14, -1.36, 0.45, -1.82, -1.86, 0.06, -0.14, 1.67, 0.52, 0.06, -0.01, -1.01, -1.95, -1.23, 0.77, -1.2, -0.52, -1.99, 1.32, -1.38, -0.93, 1.52, 0.04, 1.39, 0.56, 0.97, -1.63, 0.16, 0.03, 1.49, -0.55, 0.39, -1.76, -0.45, -0.71, -1.4, 1.27, -0.48, 1.91], float: true,
                   roi: nil, scales: nil, sizes: [1, 2, 3, 8],
                   yShape: [1, 2, 3, 8], y: [-0.08, -0.24479167, -0.42395836, -0.096875, -0.036458332, -0.24270836, -0.105833344, 0.016666671, 1.96, 0.60375005, -1.15375, -1.29125, -0.794375, 0.336875, -0.82687503, -1.82, -0.58, -0.32041666, -0.0325, -0.49083334, -0.7272917, -0.74187505, -0.68895835, -0.6466667, 0.053333323, -0.45562503, -1.030625, -0.23687501, -0.30041668, -1.22125, 0.18104169, 1.3433334, 0.56, 0.739375, 0.8075, -0.8175, -1.070625, 0.048125, 0.086875, 0.03, 0.02333335, -0.47541666, -0.98583335, 0.3225, 0.388125, -0.7889583, 0.23520833, 1.1233333]),
        ResizeCase(name: "trilinear align_corners rank 3", params: .init(mode: .linear, coordinate: .alignCorners, nearest: .roundPreferFloor),
                   xShape: [3, 4, 5], x: [0.36, 0.42, 0.55, 0.71, -1.4, -0.24, -1.04, -0.39, -1.61, 1.87, -1.14, 0.69, -0.8, 1.5, 0.65, -1.47, 1.38, 1.78, 1.62, 0.28, -1.42, -1.23, 1.71, 0.21, -1.28, 1.54, 0.57, 0.28, -0.49, -0.36, -1.04, -1.85, 1.5, -0.13, 0.19, -0.71, 1.01, -1.9, -0.51, -1.88, -1.51, 1.87, 0.63, -0.29, 0.09, 1.49, -0.62, 0.36, 0.73, -0.58, 0.08, 1.06, 1.64, -1.4, 1.73, -1.98, 1.01, 1.24, -1.45, -0.32], float: true,
                   roi: nil, scales: nil, sizes: [5, 3, 6],
                   yShape: [5, 3, 6], y: [0.36, 0.408, 0.498, 0.614, 0.288, -1.4, -0.69, -0.278, -0.427, -0.379, 0.20799999, 1.26, -1.47, 0.81, 1.62, 1.716, 1.352, 0.28, -0.53, -0.43, 0.51600003, 0.862, 0.099999994, -1.3399999, -0.22, -0.37, -0.0745, 0.015499999, -0.028500006, 0.5875, -1.09, 0.738, 0.442, 0.186, 0.284, -0.8, -1.42, -1.268, 0.53400004, 1.11, -0.088, -1.28, 0.25, -0.462, 0.278, 0.41, -0.26500002, -0.08500001, -0.71, 0.666, -0.736, -1.344, -0.784, -1.88, -1.4649999, -0.037, 0.83, 0.686, -0.151, -0.59499997, 0.5175, -0.06450002, 0.48299998, 0.438, -0.20899999, 0.245, -1.345, 0.539, 0.206, -0.59, -1.0040001, -1.1, -1.51, 1.194, 1.126, 0.262, -0.21399999, 0.09, 0.785, 0.33299997, 0.68799996, 0.46600002, -0.15299998, 0.57500005, -1.98, 0.412, 1.148, 0.16399999, -1.224, -0.32]),
        ResizeCase(name: "cubic half_pixel a=-0.5", params: .init(mode: .cubic, coordinate: .halfPixel, nearest: .roundPreferFloor, cubicCoefficient: -0.5),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: [1.0, 1.0, 1.5, 2.0], sizes: nil,
                   yShape: [1, 1, 4, 6], y: [0.51273715, 0.8385399, 1.543382, 1.6759552, 1.2362589, 1.0316658, -0.28085938, -0.16598633, 0.08766602, 0.51388675, 1.1126758, 1.3874903, -1.3414494, -1.2252225, -0.9641477, -0.20536503, 1.0511255, 1.6286427, -2.096117, -1.3099947, 0.39793238, 1.2519374, 1.2520204, 1.2467027]),
        ResizeCase(name: "cubic asymmetric default a", params: .init(mode: .cubic, coordinate: .asymmetric, nearest: .roundPreferFloor),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: [1.0, 1.0, 1.3, 0.8], sizes: nil,
                   yShape: [1, 1, 5, 3], y: [1.0, 2.296875, 3.5937498, 3.7628584, 5.059734, 6.356609, 7.1156144, 8.41249, 9.709364, 10.591258, 11.888132, 13.185006, 13.196629, 14.493503, 15.790377]),
        ResizeCase(name: "cubic exclude_outside", params: .init(mode: .cubic, coordinate: .halfPixel, nearest: .roundPreferFloor, cubicCoefficient: -0.5, excludeOutside: true),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: nil, scales: [1.0, 1.0, 0.8, 1.6], sizes: nil,
                   yShape: [1, 1, 3, 6], y: [1.2225456, 1.6389471, 2.3570013, 2.9820013, 3.6618097, 4.2604036, 6.4280443, 6.8444457, 7.5625, 8.1875, 8.867309, 9.465902, 11.803386, 12.219787, 12.937841, 13.56284, 14.242649, 14.841244]),
        ResizeCase(name: "linear tf_crop_and_resize", params: .init(mode: .linear, coordinate: .tfCropAndResize, nearest: .roundPreferFloor, extrapolationValue: 10),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: [0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 1.7], scales: nil, sizes: [1, 1, 3, 3],
                   yShape: [1, 1, 3, 3], y: [7.6000004, 10.0, 10.0, 12.400001, 10.0, 10.0, 10.0, 10.0, 10.0]),
        ResizeCase(name: "nearest tf_crop_and_resize", params: .init(mode: .nearest, coordinate: .tfCropAndResize, nearest: .roundPreferFloor, extrapolationValue: 10),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: [0.0, 0.0, 0.4, 0.6, 1.0, 1.0, 1.2, 1.7], scales: nil, sizes: [1, 1, 3, 3],
                   yShape: [1, 1, 3, 3], y: [7.0, 10.0, 10.0, 11.0, 10.0, 10.0, 10.0, 10.0, 10.0]),
        ResizeCase(name: "cubic tf_crop_and_resize axes", params: .init(mode: .cubic, coordinate: .tfCropAndResize, nearest: .roundPreferFloor, axes: [2, 3]),
                   xShape: [1, 1, 4, 4], x: [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0, 16.0], float: true,
                   roi: [0.2, 0.3, 0.9, 0.8], scales: nil, sizes: [3, 1],
                   yShape: [1, 1, 3, 1], y: [4.631876, 9.079381, 13.688884]),
        ResizeCase(name: "linear antialias down", params: .init(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor, antialias: true),
                   xShape: [1, 2, 5, 5], x: [-0.13, -0.79, -0.89, -0.98, -0.22, 0.02, 0.21, 1.98, 1.17, 0.49, 1.96, -1.14, -1.36, 0.45, -1.82, -1.86, 0.06, -0.14, 1.67, 0.52, 0.06, -0.01, -1.01, -1.95, -1.23, 0.77, -1.2, -0.52, -1.99, 1.32, -1.38, -0.93, 1.52, 0.04, 1.39, 0.56, 0.97, -1.63, 0.16, 0.03, 1.49, -0.55, 0.39, -1.76, -0.45, -0.71, -1.4, 1.27, -0.48, 1.91], float: true,
                   roi: nil, scales: nil, sizes: [1, 2, 3, 2],
                   yShape: [1, 2, 3, 2], y: [-0.1486, -0.023400005, 0.03151112, -0.089733355, -0.4186, -0.57890004, -0.41020003, 0.10120001, 0.10186667, -0.1032, -0.19364999, 0.20915]),
        ResizeCase(name: "cubic antialias down", params: .init(mode: .cubic, coordinate: .halfPixel, nearest: .roundPreferFloor, antialias: true),
                   xShape: [1, 2, 5, 5], x: [-0.13, -0.79, -0.89, -0.98, -0.22, 0.02, 0.21, 1.98, 1.17, 0.49, 1.96, -1.14, -1.36, 0.45, -1.82, -1.86, 0.06, -0.14, 1.67, 0.52, 0.06, -0.01, -1.01, -1.95, -1.23, 0.77, -1.2, -0.52, -1.99, 1.32, -1.38, -0.93, 1.52, 0.04, 1.39, 0.56, 0.97, -1.63, 0.16, 0.03, 1.49, -0.55, 0.39, -1.76, -0.45, -0.71, -1.4, 1.27, -0.48, 1.91], float: true,
                   roi: nil, scales: [1.0, 1.0, 0.6, 0.6], sizes: nil,
                   yShape: [1, 2, 3, 3], y: [-0.15731539, 0.035015028, -0.01934011, 0.1152582, 0.09498973, 0.1392743, -0.44301435, -0.49783394, -0.5565292, -0.55148274, -0.50519085, 0.43266284, 0.3828205, -0.28353113, -0.07481476, -0.24368562, -0.13972665, 0.14096415]),
        ResizeCase(name: "linear axes not_larger", params: .init(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor, axes: [2, 3], aspect: .notLarger),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: nil, sizes: [7, 8],
                   yShape: [1, 1, 7, 7], y: [0.5, 0.6557143, 1.1228572, 1.59, 1.38, 1.1700001, 1.1, 0.27142856, 0.4110204, 0.82979596, 1.2485715, 1.2087755, 1.1689796, 1.1557143, -0.41428572, -0.32306123, -0.049387757, 0.22428572, 0.69510204, 1.1659184, 1.3228571, -1.1, -1.0571429, -0.92857146, -0.8, 0.18142857, 1.1628572, 1.49, -1.4771429, -1.2530613, -0.5808163, 0.091428556, 0.6357143, 1.1800001, 1.3614286, -1.8542857, -1.4489796, -0.23306125, 0.9828571, 1.09, 1.1971428, 1.2328572, -1.98, -1.5142857, -0.11714288, 1.28, 1.2414286, 1.2028571, 1.19]),
        ResizeCase(name: "nearest negative axes not_smaller", params: .init(mode: .nearest, coordinate: .halfPixel, nearest: .roundPreferFloor, axes: [-1, -2], aspect: .notSmaller),
                   xShape: [1, 1, 3, 3], x: [0.5, 1.59, 1.1, -1.1, -0.8, 1.49, -1.98, 1.28, 1.19], float: true,
                   roi: nil, scales: nil, sizes: [4, 7],
                   yShape: [1, 1, 7, 7], y: [0.5, 0.5, 1.59, 1.59, 1.59, 1.1, 1.1, 0.5, 0.5, 1.59, 1.59, 1.59, 1.1, 1.1, -1.1, -1.1, -0.8, -0.8, -0.8, 1.49, 1.49, -1.1, -1.1, -0.8, -0.8, -0.8, 1.49, 1.49, -1.1, -1.1, -0.8, -0.8, -0.8, 1.49, 1.49, -1.98, -1.98, 1.28, 1.28, 1.28, 1.19, 1.19, -1.98, -1.98, 1.28, 1.28, 1.28, 1.19, 1.19]),
        ResizeCase(name: "int64 nearest", params: .init(mode: .nearest, coordinate: .asymmetric, nearest: .floor),
                   xShape: [1, 1, 3, 3], x: [1, 20, 300, -4, 55, 6, 7, -80, 9000], float: false,
                   roi: nil, scales: [1.0, 1.0, 2.0, 1.5], sizes: nil,
                   yShape: [1, 1, 6, 4], y: [1, 1, 20, 300, 1, 1, 20, 300, -4, -4, 55, 6, -4, -4, 55, 6, 7, 7, -80, 9000, 7, 7, -80, 9000]),
        ResizeCase(name: "int64 linear", params: .init(mode: .linear, coordinate: .halfPixel, nearest: .roundPreferFloor),
                   xShape: [1, 1, 3, 3], x: [1, 20, 300, -4, 55, 6, 7, -80, 9000], float: false,
                   roi: nil, scales: [1.0, 1.0, 1.5, 1.5], sizes: nil,
                   yShape: [1, 1, 4, 4], y: [1, 10, 67, 253, -2, 18, 57, 134, -2, 15, 278, 1260, 5, -26, 1202, 6241]),
    ]

    func testResizeMatchesOnnxReference() throws {
        for c in cases {
            let x = c.float ? Tensor(shape: c.xShape, floats: c.x.map(Float.init))
                : Tensor(shape: c.xShape, ints: c.x.map { Int64($0) })
            let inputs: [Tensor?] = [x, c.roi.map { floats([$0.count], $0) },
                                     c.scales.map { floats([$0.count], $0) }, c.sizes.map(ints)]
            let y = try runShapeOp(.resize(c.params), inputs)[0]
            XCTAssertEqual(y.shape, c.yShape, c.name)
            XCTAssertEqual(y.dtype, x.dtype, c.name)
            assertClose(y.doubleArray, c.y, tolerance: 1e-5, c.name)
        }
    }

    func testResizeNeedsPlanTimeScalesAndRoi() {
        let x = iota([1, 1, 2, 2])
        let p = ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .floor)
        XCTAssertThrowsError(try runShapeOp(.resize(p), [x, nil, floats([4], [1, 1, 2, 2])], runtime: [2]))
        XCTAssertThrowsError(try runShapeOp(.resize(p), [x]))
        let tf = ResizeParams(mode: .linear, coordinate: .tfCropAndResize, nearest: .floor)
        XCTAssertThrowsError(try runShapeOp(.resize(tf), [x, nil, nil, ints([1, 1, 3, 3])]))
    }

    func testLargeBilinearMatchesNaive() throws {
        // Half-pixel bilinear written plainly, against the separable parallel kernel.
        let (n, c, h, w, oh, ow) = (2, 3, 37, 53, 80, 29)
        let x = Tensor(shape: [n, c, h, w], floats: (0..<(n * c * h * w)).map { Float(($0 * 7919) % 1000) / 100 })
        let p = ResizeParams(mode: .linear, coordinate: .halfPixel, nearest: .floor)
        let y = try runShapeOp(.resize(p), [x, nil, nil, ints([n, c, oh, ow])])[0]
        func taps(_ o: Int, _ inSize: Int, _ outSize: Int) -> (Int, Int, Float) {
            let s = (Double(o) + 0.5) * Double(inSize) / Double(outSize) - 0.5
            let f = s.rounded(.down), t = Float(s - f)
            return (min(max(Int(f), 0), inSize - 1), min(max(Int(f) + 1, 0), inSize - 1), t)
        }
        var expected: [Float] = []
        for b in 0..<(n * c) {
            for i in 0..<oh {
                let (y0, y1, ty) = taps(i, h, oh)
                for j in 0..<ow {
                    let (x0, x1, tx) = taps(j, w, ow)
                    let v = { (yy: Int, xx: Int) in x.floats[(b * h + yy) * w + xx] }
                    let want = (1 - ty) * ((1 - tx) * v(y0, x0) + tx * v(y0, x1)) + ty * ((1 - tx) * v(y1, x0) + tx * v(y1, x1))
                    expected.append(want)
                }
            }
        }
        assertClose(y.floatArray, expected, tolerance: 1e-4, "bilinear \(x.shape) -> \(y.shape)")
    }
}
