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

/// The blob format of `probes.points`: per point, little-endian, 30 bytes:
/// t_ms i64, lat_e7 i32, lon_e7 i32, speed_dkmh u32, heading_deg u16, tile i64.
/// Fixed width: a reader finds point i at 30 * i, and the count is the
/// length / 30.
enum ProbePacking {
    /// Bytes per point.
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

    /// The blob of `points`.
    static func pack(_ points: some Collection<ProbePoint>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(points.count * pointSize)
        func put<T: FixedWidthInteger>(_ value: T) {
            withUnsafeBytes(of: value.littleEndian) { out.append(contentsOf: $0) }
        }
        for p in points {
            put(p.tMs)
            put(p.latE7)
            put(p.lonE7)
            put(p.speedDkmh)
            put(UInt16(truncatingIfNeeded: p.headingDeg))
            put(p.tile)
        }
        return out
    }

    /// The points of a stored blob; nil when its length is not a whole
    /// number of points.
    static func unpack(_ blob: some Collection<UInt8>, pseudonym: String, sequence: UInt64) -> [ProbePoint]? {
        let bytes = Array(blob)
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
