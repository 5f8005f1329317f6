import FleetSimulator
import Foundation
import TelematicsWire
import Testing

@Suite("Fleet simulator")
struct FleetSimulatorTests {
    static let dictionaryPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/vectors/dicts/4242.dict").path

    @Test("the same seed gives the same records byte for byte, another seed different ones")
    func deterministic() throws {
        let config = FleetSimulator.Configuration(vehicles: 100, seed: 42, ratePerSecond: 500)
        var a = try FleetSimulator(configuration: config)
        var b = try FleetSimulator(configuration: config)
        var other = config
        other.seed = 43
        var c = try FleetSimulator(configuration: other)
        var differing = 0
        for _ in 0..<2_000 {
            let (ra, rb, rc) = (a.next(), b.next(), c.next())
            #expect(ra.value == rb.value)
            if ra.value != rc.value { differing += 1 }
        }
        #expect(differing > 1_900)
    }

    @Test("every record decodes as valid and round-trips to the message it was built from", arguments: [false, true])
    func recordsDecode(withDictionary: Bool) throws {
        let dictionary = withDictionary ? [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.dictionaryPath))) : nil
        let dictionaries = try dictionary.map { try ZstdDictionaries([(4242, $0)]) } ?? .none
        var fleet = try FleetSimulator(configuration: .init(vehicles: 30, seed: 5), dictionary: dictionary)
        let decoder = RecordDecoder(dictionaries: dictionaries)
        for _ in 0..<3_000 {
            let record = fleet.next()
            let key = record.key
            let decoded = try record.value.withUnsafeBytes { value in
                try key.withUnsafeBytes { key in try decoder.decode(value, key: key).materialize() }
            }
            #expect(decoded == record.message)
        }
    }

    @Test("the mix is RTTI-dominated with rare urgent calls, HV event repeats, and rising sequences per vehicle")
    func realisticMix() throws {
        var fleet = try FleetSimulator(configuration: .init(vehicles: 50, seed: 8))
        var byKind: [MessageKind: Int] = [:]
        var lastSequence: [VIN: UInt64] = [:]
        var hvEventIDs: [String: Int] = [:]
        var urgent = 0
        var lastTime = Int64.min
        let total = 20_000
        for _ in 0..<total {
            let r = fleet.next()
            byKind[r.kind, default: 0] += 1
            if let previous = lastSequence[r.message.vin] { #expect(r.message.sequence > previous) }
            lastSequence[r.message.vin] = r.message.sequence
            #expect(r.message.recordedAtMs >= lastTime)
            lastTime = r.message.recordedAtMs
            switch r.message.body {
            case .hvWarnCall(let call): hvEventIDs[call.eventID, default: 0] += 1
            case .teleserviceCall(let call) where call.trigger == .breakdown || call.trigger == .accident: urgent += 1
            case .rttiProbe(let probe):
                // Positions stay in and around Denmark (the first latitude is absolute).
                #expect((540_000_000...580_000_000).contains(Int64(probe.dlatE7.first ?? 0)))
            default: break
            }
        }
        func share(_ kind: MessageKind) -> Double { Double(byKind[kind, default: 0]) / Double(total) }
        #expect((0.66...0.74).contains(share(.rttiProbe)))
        #expect((0.10...0.14).contains(share(.teleserviceCall)))
        #expect((0.10...0.14).contains(share(.chargeSession)))
        #expect((0.04...0.06).contains(share(.consentState)))
        #expect((0.005...0.015).contains(share(.hvWarnCall)))
        #expect(urgent > 0, "some breakdown or accident calls")
        #expect(urgent < byKind[.teleserviceCall, default: 0] / 10, "but rare ones")
        #expect(hvEventIDs.values.contains { $0 > 1 }, "some HV events are sent again")
        #expect(lastSequence.count == 50)
    }

    @Test("the token bucket holds a steady rate after its burst")
    func tokenBucket() {
        var bucket = TokenBucket(rate: 100, burst: 10)
        #expect(bucket.take(10, now: 0) == 0, "the burst is free")
        #expect(abs(bucket.take(10, now: 0) - 0.1) < 1e-9, "then 10 tokens take 0.1 s")
        #expect(bucket.take(5, now: 0.2) == 0, "time refills it")
    }
}
