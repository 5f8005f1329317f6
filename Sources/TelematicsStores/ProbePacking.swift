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
    /// The points, in the order of the probe.
    var points: ArraySlice<ProbePoint>
    /// ``ProbePacking/pack(_:)`` of the points.
    var blob: [UInt8]
}

/// A batch's probes made ready for the store ahead of its transaction
/// (``StoreBatch/prepareProbes()``, on the pipeline's routing thread): grouped
/// and packed, with the aggregate deltas they make if all of them are new,
/// in lock order. Only what the store alone can know is left to the
/// transaction: which probes are new.
struct PreparedProbes: Sendable {
    var probes: [PackedProbe]
    /// Points of the batch, and the keys of its first and last: to notice a
    /// batch changed after it was prepared.
    var pointCount: Int
    var ends: [ProbeKey]
    /// The deltas of all points, sorted.
    var traffic: SortedTrafficDelta

    init(_ points: [ProbePoint]) {
        probes = ProbePacking.group(points)
        pointCount = points.count
        ends = [points.first, points.last].compactMap { $0.map { ProbeKey(pseudonym: $0.pseudonym, sequence: $0.sequence) } }
        traffic = SortedTrafficDelta(TrafficDelta(newPoints: probes.lazy.flatMap(\.points)))
    }

    /// Whether this was prepared from `points`.
    func matches(_ points: [ProbePoint]) -> Bool {
        points.count == pointCount
            && ends == [points.first, points.last].compactMap { $0.map { ProbeKey(pseudonym: $0.pseudonym, sequence: $0.sequence) } }
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

    /// The probes of `points`, one per (pseudonym, sequence), in first-seen
    /// order. A probe's points must come together (the router appends them
    /// so); a probe seen again later in the list is a repeat within the
    /// batch and left out, its points counted as already present.
    static func group(_ points: [ProbePoint]) -> [PackedProbe] {
        var probes: [PackedProbe] = []
        var seen: Set<ProbeKey> = []
        var start = points.startIndex
        while start < points.endIndex {
            let key = ProbeKey(pseudonym: points[start].pseudonym, sequence: points[start].sequence)
            var end = start + 1
            while end < points.endIndex, points[end].sequence == key.sequence, points[end].pseudonym == key.pseudonym {
                end += 1
            }
            if seen.insert(key).inserted {
                let run = points[start..<end]
                probes.append(PackedProbe(key: key, firstTMs: run.map(\.tMs).min() ?? 0, points: run, blob: pack(run)))
            }
            start = end
        }
        return probes
    }

    /// The blob of `points`, in format 2 (the schema's default for new rows).
    static func pack(_ points: some Collection<ProbePoint>) -> [UInt8] {
        var out = ProtoWriter()
        out.bytes.reserveCapacity(points.count * 10)
        func putDifference(_ value: Int64, from previous: Int64) {
            let d = value &- previous
            out.varint(UInt64(bitPattern: (d << 1) ^ (d >> 63)))
        }
        var previous = (t: Int64(0), lat: Int64(0), lon: Int64(0), tile: Int64(0))
        for p in points {
            putDifference(p.tMs, from: previous.t)
            putDifference(Int64(p.latE7), from: previous.lat)
            putDifference(Int64(p.lonE7), from: previous.lon)
            putDifference(p.tile, from: previous.tile)
            out.varint(UInt64(p.speedDkmh))
            out.varint(UInt64(p.headingDeg))
            previous = (p.tMs, Int64(p.latE7), Int64(p.lonE7), p.tile)
        }
        return out.bytes
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
