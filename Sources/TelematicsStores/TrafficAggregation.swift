import TelematicsWire

/// Speed histogram of one traffic aggregate: 5 km/h buckets from 0 to
/// 300 km/h plus one overflow bucket. A fixed histogram can be summed across
/// batches inside the aggregate's upsert (schema 4: SQLite adds the packed
/// form with `tm_hist_add`, PostgreSQL adds `bigint[]` element-wise), which a
/// stored list of speeds could not; the price is that percentiles are exact
/// only to a bucket.
public struct SpeedHistogram: Hashable, Sendable {
    /// Width of a bucket in 0.1 km/h (5 km/h).
    public static let bucketWidthDkmh: UInt32 = 50
    /// Buckets below the overflow bucket (0 ..< 300 km/h).
    public static let regularBuckets = 60
    /// Index of the overflow bucket (300 km/h and more).
    public static let overflowBucket = regularBuckets
    /// All buckets.
    public static let bucketCount = regularBuckets + 1

    /// Points per bucket; always ``bucketCount`` long.
    public private(set) var counts: [Int]

    /// An empty histogram.
    public init() {
        counts = Array(repeating: 0, count: Self.bucketCount)
    }

    /// The bucket a speed falls in.
    @inlinable
    public static func bucket(speedDkmh: UInt32) -> Int {
        min(Int(speedDkmh / bucketWidthDkmh), overflowBucket)
    }

    /// Adds `count` points to `bucket` (ignored when out of range).
    public mutating func add(bucket: Int, count: Int = 1) {
        guard counts.indices.contains(bucket) else { return }
        counts[bucket] += count
    }

    /// Points in all buckets.
    public var total: Int { counts.reduce(0, +) }

    /// Adds another histogram's counts to these.
    public mutating func add(_ other: SpeedHistogram) {
        for (i, n) in other.counts.enumerated() where n != 0 { counts[i] += n }
    }

    /// The stored form in SQLite (`traffic_aggregates.speed_histogram`,
    /// schema 6): for each bucket that holds points, in bucket order, the
    /// bucket's index (one byte) and its count (LEB128 varint). Most
    /// aggregates see a few speeds, so this is a few bytes, not the 244 of
    /// the dense form of schema 4 and 5 (which the schema-6 migration
    /// converts with ``fromDense(_:)``).
    var packed: [UInt8] {
        var out = ProtoWriter()
        for (bucket, n) in counts.enumerated() where n > 0 {
            out.varint(UInt64(bucket))  // below 0x80: one byte
            out.varint(UInt64(n))
        }
        return out.bytes
    }

    /// A histogram from its stored form; nil when it is malformed (a bucket
    /// out of range or out of order, a count cut short).
    init?(packed bytes: some Collection<UInt8>) {
        self.init()
        let parsed = Array(bytes).withUnsafeBytes { buffer -> [(bucket: Int, count: UInt64)]? in
            var reader = ProtoFieldReader(buffer)
            var entries: [(bucket: Int, count: UInt64)] = []
            do throws(WireError) {
                while !reader.isAtEnd {
                    let bucket = try reader.readVarint()
                    guard bucket < UInt64(Self.bucketCount), Int(bucket) > (entries.last?.bucket ?? -1) else { return nil }
                    entries.append((Int(bucket), try reader.readVarint()))
                }
            } catch {
                return nil
            }
            return entries
        }
        guard let parsed else { return nil }
        for entry in parsed { counts[entry.bucket] = Int(clamping: entry.count) }
    }

    /// The dense stored form of schema 4 and 5 (``bucketCount``
    /// little-endian 32-bit counts) in the form of schema 6; nil when the
    /// length is wrong.
    static func fromDense(_ bytes: some Collection<UInt8>) -> [UInt8]? {
        let bytes = Array(bytes)
        guard bytes.count == bucketCount * 4 else { return nil }
        var histogram = SpeedHistogram()
        for i in 0..<bucketCount {
            histogram.counts[i] = (0..<4).reduce(0) { $0 | Int(bytes[4 * i + $1]) << (8 * $1) }
        }
        return histogram.packed
    }

    /// A histogram from PostgreSQL's `bigint[]` form (missing buckets are 0).
    init(counts values: [Int64]) {
        self.init()
        for (i, n) in values.prefix(Self.bucketCount).enumerated() { counts[i] = Int(n) }
    }

    /// Adds two stored (packed) histograms: SQLite's `tm_hist_add(a, b)`,
    /// which merges a batch's histogram into a stored row. A NULL (a row
    /// written before schema 4) counts as empty.
    static func addPacked(_ a: [UInt8]?, _ b: [UInt8]?) -> [UInt8] {
        var sum = a.flatMap { SpeedHistogram(packed: $0) } ?? SpeedHistogram()
        if let other = b.flatMap({ SpeedHistogram(packed: $0) }) { sum.add(other) }
        return sum.packed
    }

    /// The speed (km/h) below which `fraction` of the points lie, linearly
    /// interpolated within the bucket that holds it; the overflow bucket
    /// reports its lower bound (300 km/h). 0 for an empty histogram.
    public func percentileKmh(_ fraction: Double) -> Double {
        let total = self.total
        guard total > 0 else { return 0 }
        let target = fraction * Double(total)
        let width = Double(Self.bucketWidthDkmh) / 10
        var below = 0
        for (bucket, count) in counts.enumerated() where count > 0 {
            if Double(below + count) >= target {
                let lower = Double(bucket) * width
                if bucket == Self.overflowBucket { return lower }
                return lower + max(0, target - Double(below)) / Double(count) * width
            }
            below += count
        }
        return Double(Self.overflowBucket) * width
    }
}

/// What newly stored probe points add to the traffic aggregates: a pure
/// reduction both stores share, so the SQL only adds deltas.
struct TrafficDelta: Sendable {
    /// (tile, minute) of an aggregate.
    struct Key: Hashable, Comparable, Sendable {
        var tile: Int64
        var minuteMs: Int64
        static func < (a: Key, b: Key) -> Bool { (a.tile, a.minuteMs) < (b.tile, b.minuteMs) }
    }

    /// Additions to one aggregate row, its speed histogram included.
    struct Sums: Sendable {
        var points = 0
        var speedSumDkmh: Int64 = 0
        var vehicles = 0
        var histogram = SpeedHistogram()
    }

    /// Per (tile, minute): points and speed sums.
    var sums: [Key: Sums] = [:]
    /// (tile, minute, pseudonym) memberships the points claim.
    var memberships: Set<Membership> = []

    /// One vehicle's presence in a tile-minute.
    struct Membership: Hashable, Sendable {
        var key: Key
        var pseudonym: String
    }

    /// The deltas of `points`, which must be only newly stored ones: a point
    /// already counted must not be passed again.
    init(newPoints points: some Sequence<ProbePoint>) {
        for p in points {
            let key = Key(tile: p.tile, minuteMs: p.minuteMs)
            sums[key, default: Sums()].points += 1
            sums[key, default: Sums()].speedSumDkmh += Int64(p.speedDkmh)
            sums[key, default: Sums()].histogram.add(bucket: SpeedHistogram.bucket(speedDkmh: p.speedDkmh))
            memberships.insert(Membership(key: key, pseudonym: p.pseudonym))
        }
    }
}

/// A ``TrafficDelta`` as the writes take it, each list sorted by key:
/// concurrent writers (several pipeline instances on one PostgreSQL) then
/// lock aggregate rows in the same order and cannot deadlock each other.
struct SortedTrafficDelta: Sendable {
    var memberships: [TrafficDelta.Membership]
    var sums: [(TrafficDelta.Key, TrafficDelta.Sums)]

    init(_ delta: TrafficDelta) {
        memberships = delta.memberships.sorted { ($0.key, $0.pseudonym) < ($1.key, $1.pseudonym) }
        sums = delta.sums.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// Counts the vehicles new in each tile-minute (`added`: how many
    /// memberships the store had not seen before, per tile-minute).
    mutating func addNewVehicles(_ added: [TrafficDelta.Key: Int]) {
        guard !added.isEmpty else { return }
        for i in sums.indices { sums[i].1.vehicles += added[sums[i].0] ?? 0 }
    }
}
