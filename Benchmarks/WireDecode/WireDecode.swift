// Decode-path benchmarks (package-benchmark): envelope + zstd + full
// validation + walking every field, per kind, with malloc counts.
//
// Each iteration decodes a whole batch of records and the metrics are
// scaled per record (`scalingFactor`), so one-time set-up cannot blur the
// mallocs-per-record figure the release gate checks (must be 0).
import Benchmark
import Foundation
import TelematicsWire

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Tests/Fixtures/vectors")

/// The sample capture's records, grouped by kind and by compression.
struct Corpus {
    var byKind: [MessageKind: [[UInt8]]] = [:]
    var plain: [[UInt8]] = []
    var zstd: [[UInt8]] = []
    var zstdDictionary: [[UInt8]] = []
    var all: [[UInt8]] = []

    init() {
        let reader = try! CaptureReader(path: fixtures.appendingPathComponent("sample.tmcap").path)
        while let r = try! reader.next() {
            let record = Array(r)
            all.append(record)
            guard let kind = MessageKind(rawValue: record[3]) else { continue }
            byKind[kind, default: []].append(record)
            if record[4] & 1 == 0 {
                plain.append(record)
            } else if record.count > 52, record[52] & 3 != 0 {
                zstdDictionary.append(record)  // frame header descriptor: a dictionary id is present
            } else {
                zstd.append(record)
            }
        }
    }
}

/// Walks every field of a decoded record, as a consumer would.
@inline(__always)
func walk(_ record: DecodedRecord) -> UInt64 {
    var sum = record.envelope.sequence
    switch record.body {
    case .teleserviceCall(let m):
        sum &+= UInt64(m.mileageKm) &+ UInt64(m.battery12vMv) &+ UInt64(m.servicePartnerID.count)
        for item in m.serviceItems { sum &+= UInt64(bitPattern: Int64(item.dueInKm)) }
        for cc in m.checkControls { sum &+= UInt64(cc.code) }
    case .hvWarnCall(let m):
        sum &+= UInt64(m.socPermille) &+ UInt64(m.eventID.count) &+ UInt64(bitPattern: Int64(m.position?.latE7 ?? 0))
    case .rttiProbe(let m):
        for p in m.points { sum &+= UInt64(bitPattern: p.latE7) &+ UInt64(p.speedDkmh) }
        for h in m.hazards { sum &+= UInt64(h.pointIndex) }
    case .chargeSession(let m):
        sum &+= UInt64(m.energyWh) &+ UInt64(m.sessionID.count)
    case .consentState(let c):
        sum &+= c.rtti ? 1 : 0
    }
    return sum
}

/// Decodes `records` once; returns a checksum so nothing is optimised away.
func decodeAll(_ records: [[UInt8]], _ decoder: RecordDecoder) -> UInt64 {
    var sum: UInt64 = 0
    for record in records {
        record.withUnsafeBytes { raw in
            if let decoded = try? decoder.decode(raw) { sum &+= walk(decoded) }
        }
    }
    return sum
}

let benchmarks: @Sendable () -> Void = {
    let corpus = Corpus()
    let dictionaries = try! ZstdDictionaries(directory: fixtures.appendingPathComponent("dicts").path)

    func decodeBenchmark(_ name: String, _ records: [[UInt8]]) {
        guard !records.isEmpty else { return }
        Benchmark(
            name,
            configuration: .init(
                metrics: [.wallClock, .throughput, .mallocCountTotal, .peakMemoryResident],
                scalingFactor: .kilo,
                maxDuration: .seconds(2),
                maxIterations: 1_000,
                thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
        ) { benchmark in
            let decoder = RecordDecoder(dictionaries: dictionaries)
            _ = decodeAll(records, decoder)  // warm-up: lazy statics, zstd tables
            var index = 0
            var sum: UInt64 = 0
            benchmark.startMeasurement()
            for _ in benchmark.scaledIterations {
                records[index].withUnsafeBytes { raw in
                    if let decoded = try? decoder.decode(raw) { sum &+= walk(decoded) }
                }
                index = index == records.count - 1 ? 0 : index + 1
            }
            benchmark.stopMeasurement()
            blackHole(sum)
        }
    }

    decodeBenchmark("Decode mixed sample (per record)", corpus.all)
    for kind in MessageKind.allCases {
        decodeBenchmark("Decode \(kind.name) (per record)", corpus.byKind[kind] ?? [])
    }
    decodeBenchmark("Decode plain bodies (per record)", corpus.plain)
    decodeBenchmark("Decode zstd bodies (per record)", corpus.zstd)
    decodeBenchmark("Decode zstd+dictionary bodies (per record)", corpus.zstdDictionary)
}
