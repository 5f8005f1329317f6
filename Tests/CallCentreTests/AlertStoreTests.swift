import CallCentre
import Foundation
import TelematicsStores
import Testing

/// The alert store's rules, on both backends.
@Suite("CallCentre alert store")
struct AlertStoreTests {
    @Test("concurrent writes (the emergency lane hands over many alerts at once) each run in their own transaction", arguments: AlertStoreKind.allCases)
    func concurrentWrites(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            let outcomes = try await withThrowingTaskGroup(of: Bool.self) { group in
                for i in 0..<40 {
                    group.addTask { try await store.upsert(Sample.hvWarn(event: "evt-c\(i % 20)", sequence: UInt64(100 + i)), receivedAtMs: 1_000).isNew }
                }
                return try await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.count == 40)
            #expect(outcomes.filter { $0 }.count == 20, "one new alert per event, the rest repeats")
            #expect(try await store.alerts(openOnly: true, priority: "P0", limit: 100).count == 20)
        }
    }

    @Test("one alert per (VIN, event): a repeat updates it, an old or same repeat changes nothing", arguments: AlertStoreKind.allCases)
    func deduplication(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store

            let first = try await store.upsert(Sample.hvWarn(sequence: 10), receivedAtMs: 1_000)
            guard case .new(let created) = first else { Issue.record("first alert: \(first)"); return }
            #expect(created.id == "\(Sample.vin)/evt-1")
            #expect(created.receivedAtMs == 1_000 && created.updatedAtMs == 1_000 && created.updates == 0)

            let same = try await store.upsert(Sample.hvWarn(sequence: 10), receivedAtMs: 2_000)
            #expect(same == .unchanged(created))
            let older = try await store.upsert(Sample.hvWarn(sequence: 9, pluggedIn: false), receivedAtMs: 2_500)
            #expect(older == .unchanged(created))

            let repeatCall = try await store.upsert(Sample.hvWarn(sequence: 11, latE7: 481_400_000, pluggedIn: false, doorsOpen: true), receivedAtMs: 3_000)
            guard case .updated(let updated) = repeatCall else { Issue.record("newer repeat: \(repeatCall)"); return }
            #expect(updated.id == created.id)
            #expect(updated.updates == 1)
            #expect(updated.receivedAtMs == 1_000, "the escalation clock runs from the first call")
            #expect(updated.updatedAtMs == 3_000)
            #expect(updated.alert.sequence == 11)
            #expect(updated.alert.position?.latE7 == 481_400_000)
            #expect(updated.alert.pluggedIn == false && updated.alert.doorsOpen == true)

            // Another event of the same vehicle is another alert.
            #expect(try await store.upsert(Sample.hvWarn(event: "evt-2", sequence: 12), receivedAtMs: 4_000).isNew)
            let all = try await store.alerts(openOnly: false, priority: nil, limit: 100)
            #expect(all.map(\.id) == ["\(Sample.vin)/evt-2", "\(Sample.vin)/evt-1"])
            #expect(try await store.alert(id: created.id) == updated)

            // Durable: another connection sees what was written.
            let reopened = try await made.reopen()
            #expect(try await reopened.alert(id: created.id) == updated)
            await reopened.close()
        }
    }

    @Test("acknowledgement records who and when; the first wins; repeats keep it", arguments: AlertStoreKind.allCases)
    func acknowledgement(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            let id = try await store.upsert(Sample.hvWarn(), receivedAtMs: 1_000).record.id

            let acked = try #require(try await store.acknowledge(id: id, by: "anna", atMs: 5_000))
            #expect(acked.acknowledgedBy == "anna" && acked.acknowledgedAtMs == 5_000 && !acked.isOpen)
            let again = try #require(try await store.acknowledge(id: id, by: "bob", atMs: 6_000))
            #expect(again.acknowledgedBy == "anna" && again.acknowledgedAtMs == 5_000)
            #expect(try await store.acknowledge(id: "NOPE/none", by: "anna", atMs: 6_000) == nil)

            let repeated = try await store.upsert(Sample.hvWarn(sequence: 11), receivedAtMs: 7_000)
            #expect(repeated.record.acknowledgedBy == "anna" && repeated.record.acknowledgedAtMs == 5_000)
            #expect(try await store.alerts(openOnly: true, priority: nil, limit: 10).isEmpty)
        }
    }

    @Test("escalation marks an open alert once, never an acknowledged one", arguments: AlertStoreKind.allCases)
    func escalationMarks(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            let a = try await store.upsert(Sample.hvWarn(event: "a"), receivedAtMs: 1_000).record
            let b = try await store.upsert(Sample.hvWarn(event: "b"), receivedAtMs: 2_000).record
            let c = try await store.upsert(Sample.breakdown(), receivedAtMs: 3_000).record
            _ = try await store.acknowledge(id: b.id, by: "anna", atMs: 2_500)

            #expect(try await store.unacknowledgedOlderThan(receivedBeforeMs: 1_000).isEmpty, "strictly before")
            #expect(try await store.unacknowledgedOlderThan(receivedBeforeMs: 1_001).map(\.id) == [a.id])
            #expect(try await store.unacknowledgedOlderThan(receivedBeforeMs: 10_000).map(\.id) == [a.id, c.id])

            let escalated = try #require(try await store.markEscalated(id: a.id, atMs: 61_000))
            #expect(escalated.escalatedAtMs == 61_000 && escalated.alert.escalated && escalated.isOpen)
            #expect(try await store.markEscalated(id: a.id, atMs: 62_000) == nil, "escalated once")
            #expect(try await store.markEscalated(id: b.id, atMs: 62_000) == nil, "acknowledged alerts never escalate")
            #expect(try await store.unacknowledgedOlderThan(receivedBeforeMs: 10_000).map(\.id) == [c.id])

            // A repeat keeps the escalation; so does acknowledging afterwards.
            let repeated = try await store.upsert(Sample.hvWarn(event: "a", sequence: 99), receivedAtMs: 63_000).record
            #expect(repeated.escalatedAtMs == 61_000 && repeated.alert.escalated)
            let acked = try #require(try await store.acknowledge(id: a.id, by: "bob", atMs: 64_000))
            #expect(acked.escalatedAtMs == 61_000 && acked.acknowledgedBy == "bob")
        }
    }

    @Test("listing: P0 before P1, newest first; open and priority filters; limit", arguments: AlertStoreKind.allCases)
    func listing(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            let p1old = try await store.upsert(Sample.breakdown(vin: "WBA00000000000009", sequence: 1), receivedAtMs: 1_000).record
            let p0old = try await store.upsert(Sample.hvWarn(event: "old"), receivedAtMs: 2_000).record
            let p1new = try await store.upsert(Sample.breakdown(vin: "WBA00000000000009", sequence: 2), receivedAtMs: 3_000).record
            let p0new = try await store.upsert(Sample.hvWarn(event: "new"), receivedAtMs: 4_000).record
            _ = try await store.acknowledge(id: p0old.id, by: "anna", atMs: 5_000)

            #expect(try await store.alerts(openOnly: false, priority: nil, limit: 10).map(\.id) == [p0new.id, p0old.id, p1new.id, p1old.id])
            #expect(try await store.alerts(openOnly: true, priority: nil, limit: 10).map(\.id) == [p0new.id, p1new.id, p1old.id])
            #expect(try await store.alerts(openOnly: false, priority: "P1", limit: 10).map(\.id) == [p1new.id, p1old.id])
            #expect(try await store.alerts(openOnly: true, priority: "P0", limit: 10).map(\.id) == [p0new.id])
            #expect(try await store.alerts(openOnly: false, priority: nil, limit: 2).map(\.id) == [p0new.id, p0old.id])
            #expect(p1old.id == "WBA00000000000009/call-1")
        }
    }

    @Test("retention deletes alerts whose event is older than the cut-off", arguments: AlertStoreKind.allCases)
    func retention(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            let old = try await store.upsert(Sample.hvWarn(event: "old", recordedAtMs: 1_000), receivedAtMs: 1_000).record
            let kept = try await store.upsert(Sample.hvWarn(event: "kept", recordedAtMs: 9_000), receivedAtMs: 9_000).record
            #expect(try await store.deleteAlerts(recordedBeforeMs: 9_000) == 1)
            #expect(try await store.alert(id: old.id) == nil)
            #expect(try await store.alert(id: kept.id) != nil)
            #expect(try await store.deleteAlerts(recordedBeforeMs: 9_000) == 0)
        }
    }

    @Test("retention deletes in bounded transactions: at most the limit each, all of them in batches", arguments: AlertStoreKind.allCases)
    func retentionBatches(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let store = made.store
            for i in 0..<7 { _ = try await store.upsert(Sample.hvWarn(event: "old-\(i)", recordedAtMs: 1_000), receivedAtMs: 1_000) }
            #expect(try await store.countAlerts(recordedBeforeMs: 2_000) == 7)
            #expect(try await store.deleteAlerts(recordedBeforeMs: 2_000, limit: 3) == 3)
            #expect(try await store.deleteAlerts(recordedBeforeMs: 2_000, batch: 2) == 4)
            #expect(try await store.countAlerts(recordedBeforeMs: 2_000) == 0)
        }
    }
}
