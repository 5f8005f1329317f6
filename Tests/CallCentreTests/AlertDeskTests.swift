import CallCentre
import Foundation
import TelematicsStores
import Testing

/// The desk: deduplication, acknowledgement, escalation timing (with a
/// clock the test moves), retention and the change feed.
@Suite("CallCentre alert desk")
struct AlertDeskTests {
    /// A desk on a fresh SQLite alert store, removed afterwards.
    func withDesk(
        escalateAfterMs: Int64 = 60_000, published: Published = Published(),
        _ body: (AlertDesk, ManualClock) async throws -> Void
    ) async throws {
        try await withAlertStore(.sqlite) { made in
            let clock = ManualClock()
            let desk = AlertDesk(store: made.store, escalateAfterMs: escalateAfterMs, clock: clock.closure, publish: published.publish)
            try await body(desk, clock)
        }
    }

    @Test("desks sharing a store (several pipeline instances) show each other's alerts and acknowledgements, each change once", arguments: AlertStoreKind.allCases)
    func sharedStoreFeed(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let clock = ManualClock()
            let mine = AlertDesk(store: made.store, clock: clock.closure, publish: { _ in })
            let other = AlertDesk(store: made.store, clock: clock.closure, publish: { _ in })
            let feed = await mine.updates()
            var events = feed.makeAsyncIterator()
            // The other instance receives an alert: this desk shows it at its next look, once.
            let id = try await other.receive(Sample.hvWarn(event: "shared")).record.id
            clock.advance(by: 1_000)
            #expect(await mine.followStore() == 1)
            #expect(await mine.followStore() == 0, "a change is shown once")
            let first = await events.next()
            #expect(first?.id == id && first?.isOpen == true)
            // Acknowledged there: shown here too.
            _ = try await other.acknowledge(id: id, by: "anna")
            #expect(await mine.followStore() == 1)
            #expect(await events.next()?.acknowledgedBy == "anna")
            // What this desk changes itself is shown once, not again by the follow.
            _ = try await mine.receive(Sample.hvWarn(event: "local"))
            #expect(await events.next()?.alert.eventID == "local")
            #expect(await mine.followStore() == 0)
        }
    }

    @Test("a repeat of an alert updates it and does not page twice")
    func deduplication() async throws {
        try await withDesk { desk, clock in
            let feed = await desk.updates()
            #expect(try await desk.receive(Sample.hvWarn(sequence: 10)).isNew)
            clock.advance(by: 1_000)
            let same = try await desk.receive(Sample.hvWarn(sequence: 10))
            #expect(same.record.updates == 0)
            guard case .unchanged = same else { Issue.record("a redelivered alert: \(same)"); return }
            let repeated = try await desk.receive(Sample.hvWarn(sequence: 11, doorsOpen: true))
            guard case .updated(let r) = repeated else { Issue.record("a repeat: \(repeated)"); return }
            #expect(r.updates == 1 && r.alert.doorsOpen == true)
            #expect(try await desk.store.alerts(openOnly: false, priority: nil, limit: 10).count == 1)

            // The feed saw the new alert and its update, not the redelivery.
            var seen: [Int] = []
            for await record in feed {
                seen.append(record.updates)
                if seen.count == 2 { break }
            }
            #expect(seen == [0, 1])
        }
    }

    @Test("escalation: not at 59.999 s, at 60 s, published once with escalated=true")
    func escalationTiming() async throws {
        let published = Published()
        try await withDesk(published: published) { desk, clock in
            let start = clock()
            let id = try await desk.receive(Sample.hvWarn()).record.id
            clock.advance(by: 59_999)
            #expect(await desk.escalateDue().isEmpty)
            #expect(published.all.isEmpty)

            clock.advance(by: 1)
            let escalated = await desk.escalateDue()
            #expect(escalated.map(\.id) == [id])
            #expect(escalated.first?.escalatedAtMs == start + 60_000)
            #expect(published.all.count == 1)
            #expect(published.all.first?.alert.escalated == true)
            #expect(published.all.first?.id == id)

            clock.advance(by: 120_000)
            #expect(await desk.escalateDue().isEmpty)
            #expect(published.all.count == 1, "escalated once")
            #expect(try await desk.store.alert(id: id)?.isEscalated == true)
            // The published JSON says escalated: true.
            let json = try JSONEncoder().encode(published.all[0].alert)
            #expect(String(decoding: json, as: UTF8.self).contains("\"escalated\":true"))
        }
    }

    @Test("an acknowledged alert never escalates; acknowledging records who and when")
    func acknowledgedNeverEscalates() async throws {
        let published = Published()
        try await withDesk(published: published) { desk, clock in
            let id = try await desk.receive(Sample.hvWarn()).record.id
            clock.advance(by: 30_000)
            let acked = try #require(try await desk.acknowledge(id: id, by: "anna"))
            #expect(acked.acknowledgedBy == "anna" && acked.acknowledgedAtMs == clock())
            clock.advance(by: 1_000)
            #expect(try await desk.acknowledge(id: id, by: "bob")?.acknowledgedBy == "anna", "the first acknowledgement wins")
            #expect(try await desk.acknowledge(id: "X/none", by: "bob") == nil)
            clock.advance(by: 600_000)
            #expect(await desk.escalateDue().isEmpty)
            #expect(published.all.isEmpty)
        }
    }

    @Test("the escalation time is configurable")
    func configurableEscalation() async throws {
        let published = Published()
        try await withDesk(escalateAfterMs: 5_000, published: published) { desk, clock in
            _ = try await desk.receive(Sample.breakdown())
            clock.advance(by: 4_999)
            #expect(await desk.escalateDue().isEmpty)
            clock.advance(by: 1)
            #expect(await desk.escalateDue().count == 1)
            #expect(published.all.map(\.alert.priority) == ["P1"])
        }
    }

    @Test("an escalation marked by a desk that stopped before publishing it is published by the next desk on the store, once", arguments: AlertStoreKind.allCases)
    func escalationOutlivesStop(kind: AlertStoreKind) async throws {
        try await withAlertStore(kind) { made in
            let clock = ManualClock()
            // The first desk marks the escalation, and every publish fails until it stops.
            let down = Published(failFirst: 1_000)
            let first = AlertDesk(store: made.store, clock: clock.closure, publish: down.publish)
            let id = try await first.receive(Sample.hvWarn()).record.id
            clock.advance(by: 60_000)
            #expect(await first.escalateDue().map(\.id) == [id])
            #expect(down.all.isEmpty)

            // The next desk (a restart) on the same data publishes it once it is orphaned, and only once.
            let published = Published()
            let reopened = try await made.reopen()
            let next = AlertDesk(store: reopened, clock: clock.closure, publish: published.publish)
            #expect(await next.escalateDue().isEmpty)
            #expect(published.all.isEmpty, "not before it is \(AlertDesk.orphanedEscalationMs) ms old: its desk may still publish it")
            clock.advance(by: AlertDesk.orphanedEscalationMs)
            #expect(await next.escalateDue().isEmpty, "nothing newly escalated")
            #expect(published.all.map(\.id) == [id])
            #expect(published.all.first?.alert.escalated == true)
            clock.advance(by: 60_000)
            _ = await next.escalateDue()
            #expect(published.all.count == 1, "published once")
            #expect(try await made.store.unpublishedEscalations(escalatedAtOrBeforeMs: clock(), limit: 10).isEmpty)
            await reopened.close()
        }
    }

    @Test("a failed publish of an escalation is retried, and sent once")
    func publishRetried() async throws {
        let published = Published(failFirst: 1)
        try await withDesk(published: published) { desk, clock in
            _ = try await desk.receive(Sample.hvWarn())
            clock.advance(by: 60_000)
            #expect(await desk.escalateDue().count == 1)
            #expect(published.all.isEmpty)
            #expect(await desk.escalateDue().isEmpty)
            #expect(published.all.count == 1)
            _ = await desk.escalateDue()
            #expect(published.all.count == 1)
        }
    }

    @Test("the escalation loop escalates without being asked")
    func escalationLoop() async throws {
        let published = Published()
        try await withDesk(published: published) { desk, clock in
            _ = try await desk.receive(Sample.hvWarn())
            let loop = Task { await desk.runEscalations(every: .milliseconds(10)) }
            defer { loop.cancel() }
            try await Task.sleep(for: .milliseconds(30))
            #expect(published.all.isEmpty)
            clock.advance(by: 60_000)
            try await withTimeout(5, "the loop's escalation") {
                while published.all.isEmpty { try await Task.sleep(for: .milliseconds(5)) }
            }
            #expect(published.all.count == 1)
        }
    }

    @Test("the escalation loop also deletes alerts past retention, without being asked")
    func retentionLoop() async throws {
        try await withDesk { desk, clock in
            let day: Int64 = 86_400_000
            let old = try await desk.receive(Sample.hvWarn(event: "old", recordedAtMs: clock() - 184 * day)).record
            let loop = Task { await desk.runEscalations(every: .milliseconds(10), purgeEvery: .milliseconds(20)) }
            defer { loop.cancel() }
            try await withTimeout(5, "the loop's purge") {
                while try await desk.store.alert(id: old.id) != nil { try await Task.sleep(for: .milliseconds(5)) }
            }
            // A later one ages past retention while the loop runs: the next round takes it.
            let later = try await desk.receive(Sample.hvWarn(event: "later", recordedAtMs: clock() - 100 * day)).record
            clock.advance(by: 90 * day)
            try await withTimeout(5, "the next purge") {
                while try await desk.store.alert(id: later.id) != nil { try await Task.sleep(for: .milliseconds(5)) }
            }
        }
    }

    @Test("purge deletes alerts six months after the event")
    func purge() async throws {
        try await withDesk { desk, clock in
            let day: Int64 = 86_400_000
            let old = try await desk.receive(Sample.hvWarn(event: "old", recordedAtMs: clock() - 184 * day)).record
            let recent = try await desk.receive(Sample.hvWarn(event: "recent", recordedAtMs: clock() - 30 * day)).record
            #expect(try await desk.purge() == 1)
            #expect(try await desk.store.alert(id: old.id) == nil)
            #expect(try await desk.store.alert(id: recent.id) != nil)
        }
    }
}
