// Decode-path benchmarks (package-benchmark) on the conformance sample
// (Tests/Fixtures/vectors/sample.tmcap, 2,000 records): the whole decode
// (envelope + zstd + full validation + walking every field) per kind and per
// compression, and zstd alone without and with the dictionary; throughput
// and malloc counts.
//
// Each measured sample decodes a thousand records (`scalingFactor`), so
// one-time set-up cannot blur the mallocs-per-record figure the release gate
// checks (must be 0). Benchmarks/run.sh runs them and reads the results.
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

/// The configuration of every benchmark here. Per record: each iteration is
/// one record, and `scalingFactor` batches a thousand per measured sample.
/// The CI gate checks `mallocCountTotal` against the static thresholds in
/// Benchmarks/Thresholds (0 for every benchmark, tolerance 0), with
/// `swift package benchmark thresholds check --path Benchmarks/Thresholds`.
/// No `peakMemoryResident`: it starts package-benchmark's sampling thread
/// (every ~5 ms, reading /proc), whose own allocations the process-wide
/// malloc counter counts too: 16-28 per thousand records on a loaded machine.
var perRecord: Benchmark.Configuration {
    .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        scalingFactor: .kilo,
        maxDuration: .seconds(2),
        maxIterations: 1_000,
        thresholds: [.mallocCountTotal: .init(absolute: [.p90: 0])])
}

/// Runs `body` on one record after the other (round robin) for the benchmark's
/// scaled iterations; a warm-up pass over every record comes first.
func perRecordBenchmark(_ name: String, _ records: [[UInt8]], _ body: @escaping (UnsafeRawBufferPointer) -> UInt64) {
    guard !records.isEmpty else { return }
    Benchmark(name, configuration: perRecord) { benchmark in
        var sum: UInt64 = 0
        for record in records { sum &+= record.withUnsafeBytes(body) }  // warm-up: lazy statics, zstd tables
        var index = 0
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations {
            sum &+= records[index].withUnsafeBytes(body)
            index = index == records.count - 1 ? 0 : index + 1
        }
        benchmark.stopMeasurement()
        blackHole(sum)
    }
}

// Names are file-name friendly: the static thresholds live in
// Benchmarks/Thresholds/WireDecode.<name>.p90.json.
let benchmarks: @Sendable () -> Void = {
    let corpus = Corpus()
    let dictionaries = try! ZstdDictionaries(directory: fixtures.appendingPathComponent("dicts").path)

    // The whole decode path: envelope, zstd, full validation, walking every field.
    func decodeBenchmark(_ name: String, _ records: [[UInt8]]) {
        let decoder = RecordDecoder(dictionaries: dictionaries)
        perRecordBenchmark("decode.\(name)", records) { raw in
            guard let decoded = try? decoder.decode(raw) else { return 0 }
            return walk(decoded)
        }
    }
    decodeBenchmark("mixed", corpus.all)
    for kind in MessageKind.allCases {
        decodeBenchmark("\(kind.name)", corpus.byKind[kind] ?? [])
    }
    decodeBenchmark("plain", corpus.plain)
    decodeBenchmark("zstd", corpus.zstd)
    decodeBenchmark("zstd-dictionary", corpus.zstdDictionary)

    // zstd alone on the same bodies (the envelope's 48-byte header skipped),
    // without and with the dictionary, as the decoder's decompressor does it.
    func zstdBenchmark(_ name: String, _ records: [[UInt8]]) {
        let decompressor = ZstdDecompressor(dictionaries: dictionaries)
        perRecordBenchmark("zstd.\(name)", records) { raw in
            guard let body = try? decompressor.decompress(UnsafeRawBufferPointer(rebasing: raw[48...])) else { return 0 }
            return UInt64(body.count)
        }
    }
    zstdBenchmark("no-dictionary", corpus.zstd)
    zstdBenchmark("dictionary", corpus.zstdDictionary)
}
