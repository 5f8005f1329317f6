import TelematicsWire

/// (pseudonym, sequence): what identifies a stored probe.
struct ProbeKey: Hashable {
    var pseudonym: String
    var sequence: UInt64
}

/// One probe as the stores keep it: a row whose points are packed into one
/// blob, so that a probe of twenty points is one row write, not twenty.
struct PackedProbe: Sendable {
    var key: ProbeKey
    /// Time of the first point: what retention deletes by.
    var firstTMs: Int64
    /// Points in the probe.
    var pointCount: Int
    /// Where its blob (``ProbePacking`` format 2) lies in ``ProbeRows/bytes``.
    var blob: Range<Int>
}

/// The probes of a batch as the stores write them, made ready outside the
/// store's transaction (on the pipeline's routing thread): a row each, its
/// points packed into one shared byte array, and the aggregate deltas they
/// make if all of them are new. Only what the store alone can know is left
/// to the transaction: which probes are new.
///
/// The router packs each probe straight from its wire view
/// (``StoreBatch/appendProbe(pseudonym:sequence:points:)``), with no value
/// per point in between.
public struct ProbeRows: Sendable {
    private(set) var probes: [PackedProbe] = []
    /// The blobs of all probes, end to end.
    private(set) var bytes: [UInt8] = []
    /// Points given, probes repeated within the batch included.
    private(set) var pointCount = 0
    private var seen: Set<ProbeKey> = []
    private var traffic = TrafficAccumulator()
    /// Reused to pack a probe before it is appended to ``bytes``.
    private var scratch: [UInt8] = []

    public init() {}

    /// No probe was given.
    public var isEmpty: Bool { pointCount == 0 }

    /// Adds the probes of `other` after these (a batch routed in shards:
    /// one vehicle's probes are all in one shard, so no probe is in both).
    mutating func append(contentsOf other: ProbeRows) {
        let shift = bytes.count
        bytes.append(contentsOf: other.bytes)
        probes.append(contentsOf: other.probes.lazy.map {
            var p = $0
            p.blob = (p.blob.lowerBound + shift)..<(p.blob.upperBound + shift)
            return p
        })
        pointCount += other.pointCount
        seen.formUnion(other.seen)
        traffic.merge(other.traffic)
    }

    /// The blob of `probe`.
    func blob(of probe: PackedProbe) -> ArraySlice<UInt8> { bytes[probe.blob] }

    /// The aggregate deltas of all probes, sorted.
    func sortedTraffic() -> SortedTrafficDelta { traffic.sorted() }

    /// Lets go of the packing buffer (a probe's points x 50 bytes, large for
    /// a hostile probe) once every probe is appended: the rows wait in the
    /// lane until they are durable.
    mutating func releaseScratch() { scratch = [] }

    /// Adds the probe (pseudonym, sequence) with `points`, each placed in
    /// its road tile (``RoadTile``). A probe seen before in the batch is a
    /// repeat: left out, its points counted as already present.
    mutating func append(pseudonym: String, sequence: UInt64, points: RttiPoints) {
        append(pseudonym: pseudonym, sequence: sequence, count: points.count, placingInTiles: true, points: points.lazy.map { p in
            PointFields(tMs: p.tMs, latE7: Int64(Int32(truncatingIfNeeded: p.latE7)), lonE7: Int64(Int32(truncatingIfNeeded: p.lonE7)),
                        tile: 0, speedDkmh: p.speedDkmh, headingDeg: p.headingDeg)
        })
    }

    /// Adds points given as values, grouped into probes: a probe's points
    /// must come together (a probe seen again later is a repeat).
    mutating func append(points: [ProbePoint]) {
        var start = points.startIndex
        while start < points.endIndex {
            let first = points[start]
            var end = start + 1
            while end < points.endIndex, points[end].sequence == first.sequence, points[end].pseudonym == first.pseudonym {
                end += 1
            }
            append(pseudonym: first.pseudonym, sequence: first.sequence, count: end - start, placingInTiles: false,
                   points: points[start..<end].lazy.map(PointFields.init))
            start = end
        }
    }

    /// What a point contributes to its row and its aggregate.
    struct PointFields {
        init(tMs: Int64, latE7: Int64, lonE7: Int64, tile: Int64, speedDkmh: UInt32, headingDeg: UInt32) {
            (self.tMs, self.latE7, self.lonE7, self.tile, self.speedDkmh, self.headingDeg) = (tMs, latE7, lonE7, tile, speedDkmh, headingDeg)
        }

        init(_ p: ProbePoint) {
            self.init(tMs: p.tMs, latE7: Int64(p.latE7), lonE7: Int64(p.lonE7), tile: p.tile, speedDkmh: p.speedDkmh, headingDeg: p.headingDeg)
        }

        var tMs: Int64
        var latE7: Int64
        var lonE7: Int64
        var tile: Int64
        var speedDkmh: UInt32
        var headingDeg: UInt32
    }

    /// Packs `points` (`count` of them) into ``bytes`` in format 2 and adds
    /// them to the aggregate deltas, one slot lookup per tile-minute run.
    /// With `placingInTiles`, each point's tile is computed from its
    /// position (its `tile` is ignored).
    private mutating func append(pseudonym: String, sequence: UInt64, count: Int, placingInTiles: Bool, points: some Sequence<PointFields>) {
        guard count > 0 else { return }
        pointCount += count
        let key = ProbeKey(pseudonym: pseudonym, sequence: sequence)
        guard seen.insert(key).inserted else { return }
        let vehicle = VehicleSet.key(pseudonym)
        let capacity = count * PointWriter.maximumBytesPerPoint
        if scratch.count < capacity { scratch = Array(repeating: 0, count: capacity) }
        var firstT = Int64.max
        var run = (minuteStart: Int64.max, minuteEnd: Int64.min, tile: Int64.min, slot: -1)
        let used = scratch.withUnsafeMutableBufferPointer { out -> Int in
            var writer = PointWriter()
            var at = 0
            var tiles = TileCache()
            for var p in points {
                if placingInTiles { p.tile = tiles.tile(latE7: p.latE7, lonE7: p.lonE7) }
                writer.write(p, to: out, at: &at)
                firstT = min(firstT, p.tMs)
                if p.tile != run.tile || p.tMs < run.minuteStart || p.tMs >= run.minuteEnd {
                    let minute = ProbePoint.minute(ofMs: p.tMs)
                    run = (minute, minute &+ 60_000, p.tile, traffic.slot(TrafficDelta.Key(tile: p.tile, minuteMs: minute), vehicle: vehicle))
                }
                traffic.add(slot: run.slot, speedDkmh: p.speedDkmh)
            }
            return at
        }
        let start = bytes.count
        bytes.append(contentsOf: scratch[0..<used])
        probes.append(PackedProbe(key: key, firstTMs: firstT, pointCount: count, blob: start..<bytes.count))
    }
}

/// Writes points in ``ProbePacking`` format 2: per point, LEB128 varints of
/// t_ms, lat_e7, lon_e7 and tile as zigzag differences from the point
/// before (from 0 for the first), then speed_dkmh and heading_deg. The one
/// encoder of the format: the router's packing and ``ProbePacking/pack(_:)``.
struct PointWriter {
    /// At most 4 x 10 + 2 x 5 bytes.
    static let maximumBytesPerPoint = 50
    private var previous = (t: Int64(0), lat: Int64(0), lon: Int64(0), tile: Int64(0))

    /// Writes `p` at `at` in `out` (room for ``maximumBytesPerPoint``), moving `at` past it.
    @inline(__always)
    mutating func write(_ p: ProbeRows.PointFields, to out: UnsafeMutableBufferPointer<UInt8>, at: inout Int) {
        @inline(__always) func put(_ value: UInt64) {
            var v = value
            while v >= 0x80 {
                out[at] = UInt8(truncatingIfNeeded: v) | 0x80
                at &+= 1
                v >>= 7
            }
            out[at] = UInt8(truncatingIfNeeded: v)
            at &+= 1
        }
        @inline(__always) func putDifference(_ value: Int64, from previous: Int64) {
            let d = value &- previous
            put(UInt64(bitPattern: (d << 1) ^ (d >> 63)))
        }
        putDifference(p.tMs, from: previous.t)
        putDifference(p.latE7, from: previous.lat)
        putDifference(p.lonE7, from: previous.lon)
        putDifference(p.tile, from: previous.tile)
        put(UInt64(p.speedDkmh))
        put(UInt64(p.headingDeg))
        previous = (p.tMs, p.latE7, p.lonE7, p.tile)
    }
}

/// The last tile a probe's walk computed, with its bounds: consecutive
/// points are metres apart, so most fall in the tile of the point before
/// and need no division.
struct TileCache {
    private var latLow = Int64.max, latHigh = Int64.min, lonLow = Int64.max, lonHigh = Int64.min
    private var last: Int64 = 0

    @inline(__always)
    mutating func tile(latE7: Int64, lonE7: Int64) -> Int64 {
        if latE7 >= latLow && latE7 < latHigh && lonE7 >= lonLow && lonE7 < lonHigh { return last }
        let (row, column) = RoadTile.cell(latE7: latE7, lonE7: lonE7)
        latLow = row * RoadTile.sizeE7 - 900_000_000
        latHigh = latLow + RoadTile.sizeE7
        lonLow = column * RoadTile.sizeE7 - 1_800_000_000
        lonHigh = lonLow + RoadTile.sizeE7
        last = row * RoadTile.columns + column
        return last
    }
}

/// The blob formats of `probes.points`, told apart by the row's
/// `points_format` (schema 6; rows of schema 3-5 are format 1):
/// - format 1: per point, little-endian, 30 bytes: t_ms i64, lat_e7 i32,
///   lon_e7 i32, speed_dkmh u32, heading_deg u16, tile i64;
/// - format 2 (written since schema 6): per point, LEB128 varints of t_ms,
///   lat_e7, lon_e7 and tile as zigzag differences from the point before
///   (from 0 for the first), then speed_dkmh and heading_deg. Points of a
///   probe are seconds and metres apart, so a point is about 8 bytes, not 30.
enum ProbePacking {
    /// Bytes per point of format 1.
    static let pointSize = 30

    /// The blob of `points`, in format 2 (the schema's default for new rows).
    static func pack(_ points: some Collection<ProbePoint>) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: points.count * PointWriter.maximumBytesPerPoint) { out, written in
            var writer = PointWriter()
            var at = 0
            for p in points { writer.write(ProbeRows.PointFields(p), to: out, at: &at) }
            written = at
        }
    }

    /// The points of a stored blob of `format`; nil when the blob is not
    /// one of that format (or the format unknown).
    static func unpack(_ blob: some Collection<UInt8>, format: Int, pseudonym: String, sequence: UInt64) -> [ProbePoint]? {
        let bytes = Array(blob)
        switch format {
        case 1: return unpackFixed(bytes, pseudonym: pseudonym, sequence: sequence)
        case 2: break
        default: return nil
        }
        return bytes.withUnsafeBytes { buffer -> [ProbePoint]? in
            var reader = ProtoFieldReader(buffer)
            func nextDifference(from previous: Int64) throws(WireError) -> Int64 {
                let z = try reader.readVarint()
                return previous &+ (Int64(bitPattern: z >> 1) ^ -Int64(bitPattern: z & 1))
            }
            var points: [ProbePoint] = []
            var previous = (t: Int64(0), lat: Int64(0), lon: Int64(0), tile: Int64(0))
            do throws(WireError) {
                while !reader.isAtEnd {
                    let t = try nextDifference(from: previous.t), lat = try nextDifference(from: previous.lat)
                    let lon = try nextDifference(from: previous.lon), tile = try nextDifference(from: previous.tile)
                    let speed = try reader.readVarint(), heading = try reader.readVarint()
                    guard let lat32 = Int32(exactly: lat), let lon32 = Int32(exactly: lon),
                          let speed32 = UInt32(exactly: speed), let heading32 = UInt32(exactly: heading)
                    else { return nil }
                    points.append(ProbePoint(
                        pseudonym: pseudonym, sequence: sequence, pointIndex: points.count, tMs: t,
                        latE7: lat32, lonE7: lon32, speedDkmh: speed32, headingDeg: heading32, tile: tile))
                    previous = (t, lat, lon, tile)
                }
            } catch {
                return nil
            }
            return points
        }
    }

    /// Format 1.
    private static func unpackFixed(_ bytes: [UInt8], pseudonym: String, sequence: UInt64) -> [ProbePoint]? {
        guard bytes.count % pointSize == 0 else { return nil }
        func get<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> T {
            var value: T = 0
            for i in 0..<MemoryLayout<T>.size { value |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i) }
            return value
        }
        return stride(from: 0, to: bytes.count, by: pointSize).enumerated().map { index, o in
            ProbePoint(
                pseudonym: pseudonym, sequence: sequence, pointIndex: index, tMs: get(o, Int64.self),
                latE7: get(o + 8, Int32.self), lonE7: get(o + 12, Int32.self), speedDkmh: get(o + 16, UInt32.self),
                headingDeg: UInt32(get(o + 20, UInt16.self)), tile: get(o + 22, Int64.self))
        }
    }
}
