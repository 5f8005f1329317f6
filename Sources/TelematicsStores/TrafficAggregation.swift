import TelematicsWire

/// Road tiles for traffic aggregates: a grid of 0.01 degree (about 1.1 km
/// north-south) cells, numbered row by row from the south-west corner.
public enum RoadTile {
    /// Tile size in degrees x 10^7.
    public static let sizeE7: Int64 = 100_000
    static let columns: Int64 = 3_600_000_000 / sizeE7 + 1

    /// The tile holding a position (valid WGS84 degrees x 10^7).
    public static func id(latE7: Int64, lonE7: Int64) -> Int64 {
        let (row, column) = cell(latE7: latE7, lonE7: lonE7)
        return row * columns + column
    }

    /// The south-west corner of a tile, degrees x 10^7.
    public static func corner(of tile: Int64) -> (latE7: Int64, lonE7: Int64) {
        (tile / columns * sizeE7 - 900_000_000, tile % columns * sizeE7 - 1_800_000_000)
    }

    /// The row and column of a position (row: latitude band, column:
    /// longitude band; tile = row x columns + column).
    @inline(__always)
    static func cell(latE7: Int64, lonE7: Int64) -> (row: Int64, column: Int64) {
        (floorDivide(latE7 + 900_000_000, sizeE7), floorDivide(lonE7 + 1_800_000_000, sizeE7))
    }

    @inline(__always)
    static func floorDivide(_ a: Int64, _ b: Int64) -> Int64 {
        a >= 0 ? a / b : -((-a + b - 1) / b)
    }
}

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

/// The vehicles an aggregate has counted (schema 7), kept in its row while
/// raw points are kept (retention's `traffic-memberships` rule clears them
/// with the raw probes): a vehicle seen again in the same tile and minute,
/// in a later batch, is then not counted twice. Before schema 7 each
/// membership was a row of `traffic_vehicles`; on real traffic nearly every
/// aggregate holds one or two vehicles, so that table cost a row write per
/// aggregate for nothing but this check.
///
/// A vehicle is the 64-bit FNV-1a hash of its pseudonym's UTF-8 bytes (two
/// pseudonyms of one tile-minute share a hash with odds of about n² / 2^65).
/// SQLite stores a set as a blob of ascending keys, 8 bytes little-endian
/// each; PostgreSQL as an ascending `bigint[]`.
enum VehicleSet {
    /// The key of a pseudonym.
    static func key(_ pseudonym: String) -> Int64 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in pseudonym.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01b3
        }
        return Int64(bitPattern: hash)
    }

    /// `keys` ascending, each once (two pseudonyms of one hash count once).
    static func sortedDistinct(_ keys: [Int64]) -> [Int64] {
        guard keys.count > 1 else { return keys }
        var out: [Int64] = []
        for key in keys.sorted() where out.last != key { out.append(key) }
        return out
    }

    /// SQLite's blob of ascending distinct `keys`.
    static func blob(_ keys: [Int64]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(keys.count * 8)
        for key in keys { withUnsafeBytes(of: key.littleEndian) { out.append(contentsOf: $0) } }
        return out
    }

    /// The keys of a blob (ascending as written); nil when its length is
    /// not a multiple of 8.
    static func keys(_ blob: some Collection<UInt8>) -> [Int64]? {
        guard blob.count % 8 == 0 else { return nil }
        var keys: [Int64] = []
        keys.reserveCapacity(blob.count / 8)
        var value: UInt64 = 0
        for (i, byte) in blob.enumerated() {
            value |= UInt64(byte) << (8 * UInt64(i % 8))
            if i % 8 == 7 {
                keys.append(Int64(bitPattern: value))
                value = 0
            }
        }
        return keys
    }

    /// Ascending distinct keys of both sorted lists.
    static func union(_ a: [Int64], _ b: [Int64]) -> [Int64] {
        var out: [Int64] = []
        out.reserveCapacity(a.count + b.count)
        var i = 0, j = 0
        while i < a.count || j < b.count {
            if j == b.count || (i < a.count && a[i] < b[j]) {
                out.append(a[i]); i += 1
            } else if i == a.count || b[j] < a[i] {
                out.append(b[j]); j += 1
            } else {
                out.append(a[i]); i += 1; j += 1
            }
        }
        return out
    }

    /// How many keys of `b` are not in `a` (both ascending).
    static func added(to a: [Int64], from b: [Int64]) -> Int {
        union(a, b).count - a.count
    }

    /// `a` without the keys of `removed`.
    static func subtracting(_ a: [Int64], _ removed: Set<Int64>) -> [Int64] {
        a.filter { !removed.contains($0) }
    }
}

/// What newly stored probe points add to the traffic aggregates: a pure
/// reduction both stores share, so the SQL only adds deltas.
enum TrafficDelta {
    /// (tile, minute) of an aggregate.
    struct Key: Hashable, Comparable, Sendable {
        var tile: Int64
        var minuteMs: Int64
        static func < (a: Key, b: Key) -> Bool { (a.tile, a.minuteMs) < (b.tile, b.minuteMs) }
    }

    /// Additions to one aggregate row, its speed histogram and the
    /// vehicles seen (``VehicleSet`` keys, ascending) included.
    struct Sums: Sendable {
        var points = 0
        var speedSumDkmh: Int64 = 0
        var vehicles: [Int64] = []
        var histogram = SpeedHistogram()
    }
}

/// Reduces points to ``TrafficDelta`` sums as they are packed, in flat
/// arrays: an aggregate is a slot, looked up once per run of points in one
/// tile-minute (a probe's thirty points fall in one or two), not per point;
/// a point then adds to its slot's count, speed sum and histogram bucket.
/// A vehicle's presence in a tile-minute is a (slot, ``VehicleSet`` key)
/// pair, noted once per run; ``sorted()`` makes each slot's set of them.
struct TrafficAccumulator: Sendable {
    private var slotOf: [TrafficDelta.Key: Int] = [:]
    private var keys: [TrafficDelta.Key] = []
    private var points: [Int] = []
    private var speedSums: [Int64] = []
    /// ``SpeedHistogram/bucketCount`` counts per slot.
    private var buckets: [Int32] = []
    /// (slot, vehicle) pairs, repeats included (a vehicle back in a
    /// tile-minute within the batch).
    private var members: [(slot: Int, vehicle: Int64)] = []

    /// Whether any point was added.
    var isEmpty: Bool { keys.isEmpty }

    /// The slot of `key`, made if new, with `vehicle` (a ``VehicleSet``
    /// key) counted in it.
    mutating func slot(_ key: TrafficDelta.Key, vehicle: Int64) -> Int {
        let slot = self.slot(key)
        members.append((slot, vehicle))
        return slot
    }

    private mutating func slot(_ key: TrafficDelta.Key) -> Int {
        if let found = slotOf[key] { return found }
        let slot = keys.count
        slotOf[key] = slot
        keys.append(key)
        points.append(0)
        speedSums.append(0)
        buckets.append(contentsOf: repeatElement(0, count: SpeedHistogram.bucketCount))
        return slot
    }

    /// Adds another accumulator's sums and vehicles to these.
    mutating func merge(_ other: TrafficAccumulator) {
        let width = SpeedHistogram.bucketCount
        let mapped = other.keys.indices.map { s -> Int in
            let t = slot(other.keys[s])
            points[t] += other.points[s]
            speedSums[t] += other.speedSums[s]
            for b in 0..<width { buckets[t * width + b] += other.buckets[s * width + b] }
            return t
        }
        members.append(contentsOf: other.members.lazy.map { (mapped[$0.slot], $0.vehicle) })
    }

    /// Adds one point of `speedDkmh` to `slot`.
    @inline(__always)
    mutating func add(slot: Int, speedDkmh: UInt32) {
        points[slot] &+= 1
        speedSums[slot] &+= Int64(speedDkmh)
        buckets[slot &* SpeedHistogram.bucketCount &+ SpeedHistogram.bucket(speedDkmh: speedDkmh)] &+= 1
    }

    /// The sums, sorted by key (``SortedTrafficDelta``).
    func sorted() -> SortedTrafficDelta {
        var vehicles = [[Int64]](repeating: [], count: keys.count)
        for m in members { vehicles[m.slot].append(m.vehicle) }
        let order = keys.indices.sorted { keys[$0] < keys[$1] }
        let sums = order.map { slot -> (TrafficDelta.Key, TrafficDelta.Sums) in
            var histogram = SpeedHistogram()
            let base = slot * SpeedHistogram.bucketCount
            for b in 0..<SpeedHistogram.bucketCount where buckets[base + b] != 0 {
                histogram.add(bucket: b, count: Int(buckets[base + b]))
            }
            return (keys[slot], TrafficDelta.Sums(
                points: points[slot], speedSumDkmh: speedSums[slot], vehicles: VehicleSet.sortedDistinct(vehicles[slot]), histogram: histogram))
        }
        return SortedTrafficDelta(sums: sums)
    }
}

/// ``TrafficDelta`` sums as the writes take them, sorted by key:
/// concurrent writers (several pipeline instances on one PostgreSQL) then
/// lock aggregate rows in the same order and cannot deadlock each other.
struct SortedTrafficDelta: Sendable {
    var sums: [(TrafficDelta.Key, TrafficDelta.Sums)]

    init(sums: [(TrafficDelta.Key, TrafficDelta.Sums)]) {
        self.sums = sums
    }
}
