import Foundation
import Testing
import TelematicsKafka
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

private let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures/vectors")

/// The sample capture's records and their expected canonical JSON, parsed.
private func sample() throws -> (records: [[UInt8]], expected: [[String: Any]]) {
    let reader = try CaptureReader(path: vectors.appendingPathComponent("sample.tmcap").path)
    var records: [[UInt8]] = []
    while let r = try reader.next() { records.append(Array(r)) }
    let lines = try String(contentsOf: vectors.appendingPathComponent("sample.jsonl"), encoding: .utf8).split(separator: "\n")
    let expected = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    return (records, expected)
}

private func int(_ any: Any?) -> Int64? { (any as? NSNumber)?.int64Value }

@Suite("Pipeline: the sample capture end to end, on SQLite and PostgreSQL", .serialized)
struct SampleCaptureTests {
    @Test("all 2000 sample records are accounted for, and what is stored equals sample.jsonl field by field", arguments: StoreBackend.allCases)
    func sampleEndToEnd(backend: StoreBackend) async throws {
        let (records, expected) = try sample()
        let h = try PipelineHarness(dictionaries: try ZstdDictionaries(directory: vectors.appendingPathComponent("dicts").path))
        try await h.produce(records)
        let store = try await h.openStore(backend)
        let s = try await h.runLane(until: records.count, store: store)

        // Every record is stored, dropped for consent, or rejected: per kind, the counts add up.
        var byKind: [String: Int] = [:]
        for e in expected { byKind[e["kind"] as! String, default: 0] += 1 }
        #expect(s.tally.records == records.count)
        #expect(s.tally.rejected.isEmpty, "the sample is valid")
        for kind in MessageKind.allCases {
            #expect(s.tally.byKind[kind, default: 0] == byKind["\(kind.name)", default: 0], "\(kind.name)")
        }
        #expect(s.tally.alerts == byKind["hv_warn_call", default: 0]
            + expected.filter { ($0["body"] as? [String: Any])?["trigger"] as? String == "TRIGGER_BREAKDOWN" || ($0["body"] as? [String: Any])?["trigger"] as? String == "TRIGGER_ACCIDENT" }.count)
        let dropped = s.tally.droppedForConsent
        #expect(s.store.callsInserted + dropped["smart_maintenance", default: 0] + dropped["teleservices", default: 0] == byKind["teleservice_call"])
        #expect(s.store.sessionsInserted + s.store.sessionsAlreadyPresent + dropped["charging_history", default: 0] == byKind["charge_session"])

        // Stored values equal the expected JSON of their record.
        let index = Dictionary(uniqueKeysWithValues: expected.map { ("\($0["vin"]!)/\(int($0["sequence"])!)", $0) })
        let vins = Set(expected.map { $0["vin"] as! String }).compactMap(VIN.init)
        let sealer = PositionSealer(keyID: h.secrets.sealingKeyID, keys: h.secrets.sealingKeys)
        let references = SessionReferences(pseudonymKey: h.secrets.pseudonymKey)
        var checkedCalls = 0, checkedSessions = 0
        for vin in vins {
            for call in try await store.teleserviceCalls(vin) {
                let body = try #require(index["\(vin)/\(call.sequence)"]?["body"] as? [String: Any])
                #expect(int(body["mileage_km"]) == Int64(call.mileageKm))
                #expect(int(body["battery_12v_mv"]) == Int64(call.battery12vMv))
                #expect(body["service_partner_id"] as? String == call.servicePartnerID)
                #expect(body["in_workshop"] as? Bool == call.inWorkshop)
                #expect(body["trigger"] as? String == Trigger(rawValue: call.trigger).description)
                #expect((body["service_items"] as? [Any])?.count == call.serviceItems.count)
                #expect((body["check_controls"] as? [Any])?.count == call.checkControls.count)
                let position = body["position"] as? [String: Any]
                #expect(int(position?["lat_e7"]) == call.position.map { Int64($0.latE7) })
                checkedCalls += 1
            }
            for session in try await store.chargeSessions(vin) {
                let body = try #require(index["\(vin)/\(session.sequence)"]?["body"] as? [String: Any])
                let sessionID = try sealer.openSessionID(try #require(session.sealedSessionID), keyID: try #require(session.keyID), vin: vin, reference: session.sessionID)
                #expect(body["session_id"] as? String == sessionID)
                #expect(session.sessionID == references.reference(vin: vin, sessionID: sessionID), "keyed by the id's reference")
                #expect(int(body["energy_wh"]) == Int64(session.energyWh))
                #expect(int(body["started_at_ms"]) == session.startedAtMs && int(body["ended_at_ms"]) == session.endedAtMs)
                #expect(int(body["soc_end_permille"]) == Int64(session.socEndPermille))
                if let sealed = session.sealedPosition, let keyID = session.keyID {
                    let position = try sealer.open(sealed, keyID: keyID, vin: vin, sessionID: session.sessionID)
                    let want = try #require(body["position"] as? [String: Any])
                    #expect(int(want["lat_e7"]) == Int64(position.latE7) && int(want["lon_e7"]) == Int64(position.lonE7))
                }
                checkedSessions += 1
            }
        }
        // A switch-off in a later batch deletes sessions an earlier batch stored.
        #expect(checkedCalls == s.store.callsInserted)
        #expect(checkedSessions == s.store.sessionsInserted - s.store.sessionsDeletedByConsent)
        #expect(checkedCalls > 100 && checkedSessions > 100)

        // Probe points: every stored point is a point of an expected RTTI record.
        let storedPoints = try await store.probePointCount()
        let expectedPoints = expected.filter { $0["kind"] as? String == "rtti_probe" }.map { (($0["body"] as! [String: Any])["points"] as! [Any]).count }.reduce(0, +)
        #expect(storedPoints == s.store.probePointsInserted)
        #expect(storedPoints <= expectedPoints && storedPoints > 0)
        await store.close()
    }

    @Test("the same capture delivered twice stores nothing twice", arguments: StoreBackend.allCases)
    func deliveredTwice(backend: StoreBackend) async throws {
        let (records, _) = try sample()
        let h = try PipelineHarness(dictionaries: try ZstdDictionaries(directory: vectors.appendingPathComponent("dicts").path))
        // Consent records first, so both deliveries meet the same consent state.
        let consent = records.filter { $0[3] == MessageKind.consentState.rawValue }
        let others = records.filter { $0[3] != MessageKind.consentState.rawValue }
        try await h.produce(consent)
        let store = try await h.openStore(backend)
        try await h.runLane(until: consent.count, store: store)
        try await h.produce(others)
        let first = try await h.runLane(until: others.count, store: store)
        let once = try await store.stats()
        try await h.produce(others)
        let second = try await h.runLane(until: others.count, store: store)
        #expect(try await store.stats() == once)
        #expect(second.store.callsInserted == 0 && second.store.callsAlreadyPresent == first.store.callsInserted)
        #expect(second.store.sessionsInserted == 0 && second.store.sessionsAlreadyPresent == first.store.sessionsInserted + first.store.sessionsAlreadyPresent)
        #expect(second.store.probePointsInserted == 0 && second.store.probePointsAlreadyPresent == first.store.probePointsInserted)
        #expect(second.store.casesOpened == 0 && second.store.casesUpdated == 0 && second.store.casesClosed == 0)
        await store.close()
    }
}
