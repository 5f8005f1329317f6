import Foundation
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

/// Hostile floods through the real bulk lane (embedded cluster, SQLite
/// store): records that are all invalid, zstd bombs, bodies at and past the
/// 1 MiB limit, huge repeated fields, unknown kinds, and one record sent many
/// times. Everything rejected must reach telematics.dlq with the right
/// `error` header, a duplicate must be stored once, the lane's memory must
/// stay bounded, and its rate must stay within reason of a valid-record run
/// measured in the same test.
///
/// Counts are CI-sized; TELEMATICS_FLOOD_RECORDS (invalid records) and
/// TELEMATICS_FLOOD_DUPLICATES (copies of one record, e.g. 1000000) scale them.
/// RELIABILITY.md "## Hostile input" lists the last figures.
@Suite("Floods of hostile records", .serialized)
struct FloodTests {
    static let invalidCount = environmentCount("TELEMATICS_FLOOD_RECORDS", default: 3_000)
    static let duplicateCount = environmentCount("TELEMATICS_FLOOD_DUPLICATES", default: 10_000)
    /// The lane's RSS growth allowed during a flood: librdkafka's prefetch
    /// (queued.max.messages.kbytes, 64 MiB per partition) and the batches in
    /// flight bound it, whatever the number of records.
    static let rssGrowthLimitMiB = 512.0

    @Test("a flood of records that are all invalid (every WIRE.md code, unknown kinds, zstd bombs, bodies past 1 MiB) lands whole in telematics.dlq with the right error, at a rate within reason of valid records")
    func invalidFlood() async throws {
        let h = try PipelineHarness(partitions: 2)
        let samples = HostileRecords.rejected()
        #expect(Set(samples.map(\.code)) == Set(WireError.Code.allCases), "the flood covers every error code")
        // Each record made distinct by its sequence number (bytes 8..<16), so
        // every dead letter can be matched to what was sent.
        var records: [[UInt8]] = []
        var expected: [[UInt8]: WireError.Code] = [:]
        for i in 0..<Self.invalidCount {
            var r = samples[i % samples.count]
            if r.record.count >= 16 { withUnsafeBytes(of: UInt64(i + 1).littleEndian) { r.record.replaceSubrange(8..<16, with: $0) } }
            records.append(r.record)
            expected[r.record] = r.code
        }
        let topic = MessageKind.teleserviceCall.defaultTopic
        for chunk in records.chunks(of: 20_000) { try await h.produce(Array(chunk), topic: topic) }

        let store = try await h.openStore()
        let (s, memory) = try await measuringRSS { try await h.runLane(until: records.count, store: store, timeout: .seconds(120)) }
        let invalidRate = try #require(s.committedPerSecond)
        #expect(s.tally.rejected.values.reduce(0, +) == records.count)
        let stats = try await store.stats()
        #expect(stats.teleserviceCalls == 0 && stats.consents == 0 && stats.probePoints == 0, "nothing invalid is stored: \(stats)")

        let letters = try await h.read(h.topics.deadLetter, expecting: records.count, timeout: .seconds(60))
        #expect(letters.count == records.count, "every rejected record is a dead letter, once")
        var wrong = 0
        for letter in letters where expected[letter.value]?.rawValue != letter.headers["error"] || letter.headers["source.topic"] != topic {
            wrong += 1
            if wrong <= 3 { Issue.record("dead letter with error \(letter.headers["error"] ?? "none") for a record expected as \(expected[letter.value]?.rawValue ?? "not sent")") }
        }
        #expect(wrong == 0)
        await store.close()

        // The same lane on as many valid records, for the rate.
        let validRate = try await validRecordRate(count: min(records.count, 5_000))
        let ratio = invalidRate / validRate
        print("flood: \(records.count) invalid records at \(Int(invalidRate))/s, valid records at \(Int(validRate))/s (ratio \(fmt(ratio))); lane RSS \(memory)")
        #expect(ratio > 0.02, "rejecting is not pathologically slower than storing (0.8-1.3 alone; 0.06 seen with every suite running in parallel)")
        #expect(memory.growthMiB < Self.rssGrowthLimitMiB, "memory bounded: \(memory)")
    }

    @Test("bodies at the 1 MiB limit and records with huge repeated fields are decoded and stored; a body past the limit is rejected")
    func maximumSizeBodies() async throws {
        let h = try PipelineHarness(partitions: 1)
        var v = VehicleScript("WMW11DJ0X02F00001")
        let compressor = try ZstdCompressor(level: 3)
        let consent = v.record(VehicleScript.consent())
        // An RTTI probe whose body is as close to 1 MiB as the columns allow (at most 1 MiB is valid).
        let (probe, points) = HostileRecords.largestProbe()
        let atLimit = v.record(.rttiProbe(probe), compressor: compressor)
        // A teleservice call with 20,000 check controls.
        var call = TeleserviceCall()
        call.trigger = .stateChange
        call.checkControls = (0..<20_000).map { CheckControl(code: UInt32($0 % 4_000 + 1), severity: .info) }
        let hugeCall = v.record(.teleserviceCall(call), compressor: compressor)
        // Past the limit: the probe with a point or two more.
        var over = probe
        while MessageBody.rttiProbe(over).encoded().count <= maximumBodySize {
            over.dtMs.append(1); over.dlatE7.append(1); over.dlonE7.append(1); over.speedDkmh.append(1); over.headingDeg.append(1)
        }
        let overLimit = v.record(.rttiProbe(over), compressor: compressor)
        // A huge repeated field that breaks a rule: the columns differ in length.
        var ragged = probe
        ragged.headingDeg.removeLast()
        let raggedRecord = v.record(.rttiProbe(ragged), compressor: compressor)

        try await h.produce([consent, atLimit, hugeCall, overLimit, raggedRecord])
        let store = try await h.openStore()
        let s = try await h.runLane(until: 5, store: store, timeout: .seconds(120))
        #expect(s.tally.rejected[.decompressFailed] == 1 && s.tally.rejected[.badField] == 1)
        let stats = try await store.stats()
        #expect(stats.probePoints == points, "the probe at the limit is stored whole")
        #expect(stats.teleserviceCalls == 1)
        let letters = try await h.read(h.topics.deadLetter, expecting: 2)
        #expect(letters.count == 2)
        #expect(letters.first { $0.value == overLimit }?.headers["error"] == "decompress_failed")
        #expect(letters.first { $0.value == raggedRecord }?.headers["error"] == "bad_field")
        print("flood: probe of \(points) points (\(MessageBody.rttiProbe(probe).encoded().count) bytes decompressed) stored")
        await store.close()
    }

    @Test("the same record sent many times is stored once, with memory bounded and the rate within reason of distinct records")
    func sameRecordManyTimes() async throws {
        let h = try PipelineHarness(partitions: 1)
        var v = VehicleScript("WMW11DJ0X02D00001")
        let oil = ServiceItem(type: .engineOil, status: .dueSoon, dueInDays: 20, dueInKm: 900)
        let record = v.record(VehicleScript.call(.stateChange, items: [oil]))
        let topic = MessageKind.teleserviceCall.defaultTopic
        var sent = 0
        while sent < Self.duplicateCount {
            let n = min(50_000, Self.duplicateCount - sent)
            try await h.produce(Array(repeating: record, count: n), topic: topic)
            sent += n
        }
        let store = try await h.openStore()
        let (s, memory) = try await measuringRSS {
            try await h.runLane(until: sent, store: store, configuration: h.configuration(batchSize: 2_000), timeout: .seconds(600))
        }
        let duplicateRate = try #require(s.committedPerSecond)
        #expect(s.tally.rejected.isEmpty)
        let stats = try await store.stats()
        #expect(stats.teleserviceCalls == 1 && stats.maintenanceCases == 1, "stored once: \(stats)")
        #expect(s.store.casesOpened == 1 && s.store.casesUpdated == 0, "a duplicate re-notifies nobody")
        await store.close()

        let validRate = try await validRecordRate(count: min(sent, 5_000))
        let ratio = duplicateRate / validRate
        print("flood: one record \(sent) times at \(Int(duplicateRate))/s, distinct records at \(Int(validRate))/s (ratio \(fmt(ratio))); lane RSS \(memory)")
        #expect(ratio > 0.02, "a duplicate is not pathologically slower than a new record")
        #expect(memory.growthMiB < Self.rssGrowthLimitMiB, "memory bounded: \(memory)")
    }

    /// Records/s of the bulk lane on `count` distinct valid teleservice calls
    /// of 500 vehicles, in a fresh harness.
    private func validRecordRate(count: Int) async throws -> Double {
        let h = try PipelineHarness(partitions: 2)
        var vehicles = (0..<500).map { VehicleScript(String(format: "WMW11DJ0X02V%05d", $0)) }
        let records = (0..<count).map { i in vehicles[i % vehicles.count].record(VehicleScript.call(.monthly)) }
        try await h.produce(records)
        let store = try await h.openStore()
        let s = try await h.runLane(until: count, store: store, timeout: .seconds(120))
        await store.close()
        return try #require(s.committedPerSecond)
    }
}

/// Records built to be rejected, each with the WIRE.md code it must get.
enum HostileRecords {
    struct Sample {
        var record: [UInt8]
        var code: WireError.Code
    }

    static func rejected() -> [Sample] {
        var v = VehicleScript("WMW11DJ0X02H00001")
        let call = v.record(VehicleScript.call(.monthly))
        func patched(_ offset: Int, _ byte: UInt8) -> [UInt8] {
            var r = call
            r[offset] = byte
            return r
        }
        func withBody(_ body: [UInt8], compressed: Bool, kind: UInt8 = MessageKind.teleserviceCall.rawValue) -> [UInt8] {
            EnvelopeWriter.record(kind: kind, sequence: 1, recordedAtMs: v.time, vin: v.vin, body: body, compressed: compressed)
        }
        let compressor = try! ZstdCompressor(level: 1)
        return [
            Sample(record: Array(call.prefix(30)), code: .truncated),
            Sample(record: Array(call.dropLast()), code: .truncated),
            Sample(record: call + [0], code: .trailingBytes),
            Sample(record: patched(0, 0x55), code: .badMagic),
            Sample(record: patched(2, 2), code: .unsupportedVersion),
            Sample(record: patched(3, 0), code: .unknownKind),
            Sample(record: patched(3, 6), code: .unknownKind),
            Sample(record: patched(3, 0xFF), code: .unknownKind),
            Sample(record: patched(4, 2), code: .badFlags),
            Sample(record: patched(6, 1), code: .badFlags),
            Sample(record: patched(42, 1), code: .badFlags),
            Sample(record: patched(24, UInt8(ascii: "I")), code: .badVin),
            Sample(record: withBody([1, 2, 3, 4, 5], compressed: true), code: .decompressFailed),
            // zstd bombs: 64 MiB of zeros declaring its size, and 128 MiB of
            // RLE blocks without a declared size.
            Sample(record: withBody(compressor.compress([UInt8](repeating: 0, count: 64 << 20)), compressed: true), code: .decompressFailed),
            Sample(record: withBody(ZstdFrames.rleBomb(blocks: 1_024), compressed: true), code: .decompressFailed),
            // One byte over 1 MiB of valid protobuf (a string field).
            Sample(record: withBody(compressor.compress(lengthDelimited(field: 9, count: maximumBodySize + 1)), compressed: true), code: .decompressFailed),
            Sample(record: withBody([0x0B], compressed: false), code: .badProtobuf),
            Sample(record: withBody([0x08], compressed: false), code: .badProtobuf),
            Sample(record: withBody([0x0A, 0x7F], compressed: false), code: .badProtobuf),
            Sample(record: withBody([0x0A, 0x00], compressed: false, kind: MessageKind.consentState.rawValue), code: .badField),
            Sample(record: withBody([0x3A, 0x02, 0xC3, 0x28], compressed: false, kind: MessageKind.teleserviceCall.rawValue), code: .badField),
        ]
    }

    /// A protobuf body of one length-delimited field holding `count` bytes in total.
    static func lengthDelimited(field: UInt64, count: Int) -> [UInt8] {
        var w = ProtoWriter()
        w.key(field, 2)
        let headerGuess = w.bytes.count + 4
        w.varint(UInt64(count - headerGuess))
        w.bytes += [UInt8](repeating: UInt8(ascii: "a"), count: count - w.bytes.count)
        return w.bytes
    }

    /// The RTTI probe with the most points whose body fits 1 MiB, and its points.
    static func largestProbe() -> (RttiProbe, Int) {
        func probe(_ n: Int) -> RttiProbe {
            var p = RttiProbe()
            p.dtMs = (0..<n).map { Int32(-n + $0) }
            p.dlatE7 = [556_000_000] + Array(repeating: 3, count: n - 1)
            p.dlonE7 = [125_000_000] + Array(repeating: 3, count: n - 1)
            p.speedDkmh = Array(repeating: 800, count: n)
            p.headingDeg = Array(repeating: 90, count: n)
            return p
        }
        var low = 1, high = maximumBodySize / 5  // every point takes at least 5 bytes
        while low < high {
            let mid = (low + high + 1) / 2
            if MessageBody.rttiProbe(probe(mid)).encoded().count <= maximumBodySize { low = mid } else { high = mid - 1 }
        }
        return (probe(low), low)
    }
}

/// The process's resident memory while `body` runs: at the start and the
/// highest seen (sampled every 50 ms from /proc/self/status).
struct RSSMeasurement: CustomStringConvertible {
    var startMiB: Double
    var peakMiB: Double
    var growthMiB: Double { peakMiB - startMiB }
    var description: String { "\(Int(startMiB)) MiB at the start, peak \(Int(peakMiB)) MiB (+\(Int(growthMiB)))" }
}

func measuringRSS<T: Sendable>(_ body: () async throws -> T) async throws -> (T, RSSMeasurement) {
    let start = residentMiB()
    let sampler = Task {
        var peak = start
        while !Task.isCancelled {
            peak = max(peak, residentMiB())
            try? await Task.sleep(for: .milliseconds(50))
        }
        return peak
    }
    let result: T
    do { result = try await body() } catch {
        sampler.cancel()
        throw error
    }
    sampler.cancel()
    let peak = max(await sampler.value, residentMiB())
    return (result, RSSMeasurement(startMiB: start, peakMiB: peak))
}

/// VmRSS of this process in MiB.
func residentMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kib = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "")
    else { return 0 }
    return kib / 1024
}

private func environmentCount(_ name: String, default value: Int) -> Int {
    ProcessInfo.processInfo.environment[name].flatMap { Int($0) }.flatMap { $0 > 0 ? $0 : nil } ?? value
}

private func fmt(_ x: Double) -> String { String(format: "%.2f", x) }

extension Array {
    func chunks(of size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
