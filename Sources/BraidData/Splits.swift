import BraidTensor

/// Index lists of a train / validation / test split.
public struct SplitIndices: Sendable, Equatable {
    public var train: [Int]
    public var validation: [Int]
    public var test: [Int]
}

/// Seeded stratified split of a labelled set.
///
/// Within each class, indices are permuted with `seed`; the first
/// `round(n * testFraction)` go to test, the next `round(n * validationFraction)` to
/// validation, the rest to train. Each list is returned in ascending order. The same labels,
/// fractions and seed always give the same split.
///
/// - Throws: `DataError.invalidArgument` when a fraction is negative or they exceed 1.
public func stratifiedSplit(labels: [Int], validationFraction: Double, testFraction: Double,
                            seed: UInt64) throws -> SplitIndices {
    guard validationFraction >= 0, testFraction >= 0, validationFraction + testFraction < 1 else {
        throw DataError.invalidArgument("split fractions must be >= 0 and leave some training data: validation \(validationFraction), test \(testFraction)")
    }
    var byClass: [Int: [Int]] = [:]
    for (i, label) in labels.enumerated() { byClass[label, default: []].append(i) }
    var split = SplitIndices(train: [], validation: [], test: [])
    for label in byClass.keys.sorted() {
        var members = byClass[label]!
        var g = SplitMix64(seed: seed, label)
        shuffleInPlace(&members, using: &g)
        let n = Double(members.count)
        let nTest = Int((n * testFraction).rounded())
        let nVal = min(Int((n * validationFraction).rounded()), members.count - nTest)
        split.test += members[0..<nTest]
        split.validation += members[nTest..<(nTest + nVal)]
        split.train += members[(nTest + nVal)...]
    }
    split.train.sort()
    split.validation.sort()
    split.test.sort()
    return split
}

extension ImageDataset {
    /// The dataset cut by `stratifiedSplit` into three subsets.
    public func split(validationFraction: Double, testFraction: Double, seed: UInt64) throws
        -> (train: DatasetSubset, validation: DatasetSubset, test: DatasetSubset) {
        let s = try stratifiedSplit(labels: labels, validationFraction: validationFraction,
                                    testFraction: testFraction, seed: seed)
        return (DatasetSubset(self, indices: s.train), DatasetSubset(self, indices: s.validation),
                DatasetSubset(self, indices: s.test))
    }
}
