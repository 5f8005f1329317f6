import Foundation
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire
import Testing

// Fixtures shared by the behaviour tests.

func vin(_ n: Int) -> VIN {
    let digits = String(n)
    return VIN("WMW11DJ0X02A" + String(repeating: "0", count: 5 - digits.count) + digits)!
}

let t0: Int64 = 1_763_942_400_000  // a minute boundary

func call(
    _ v: VIN, _ sequence: UInt64, at: Int64? = nil, items: [ServiceItem] = [], controls: [CheckControl] = [],
    inWorkshop: Bool = false, partner: String = "partner-1"
) -> TeleserviceCallRecord {
    TeleserviceCallRecord(
        vin: v, sequence: sequence, recordedAtMs: at ?? t0 + Int64(sequence) * 1000, trigger: Trigger.stateChange.rawValue,
        mileageKm: UInt32(10_000 + sequence), battery12vMv: 12_400, position: Position(latE7: 556_761_000, lonE7: 125_683_000),
        servicePartnerID: partner, inWorkshop: inWorkshop, serviceItems: items, checkControls: controls)
}

func oil(_ status: ServiceStatus) -> ServiceItem {
    ServiceItem(type: .engineOil, status: status, dueInDays: 30, dueInKm: 1500)
}

func session(_ v: VIN, _ id: String, sequence: UInt64 = 1) -> ChargeSessionRecord {
    ChargeSessionRecord(
        vin: v, sessionID: id, sequence: sequence, recordedAtMs: t0, startedAtMs: t0 - 3_600_000, endedAtMs: t0,
        socStartPermille: 200, socEndPermille: 800, energyWh: 30_000, maxPowerW: 11_000,
        current: ChargingCurrent.ac.rawValue, site: ChargingSite.home.rawValue, endReason: 1,
        sealedPosition: [1, 2, 3, 0, 255], keyID: "key-2025")
}

func consent(_ v: VIN, at: Int64, sequence: UInt64 = 1, chargingHistory: Bool = true, accountDeleted: Bool = false) -> ConsentChange {
    var state = ConsentState.defaults
    state.chargingHistory = chargingHistory
    state.accountDeleted = accountDeleted
    return ConsentChange(vin: v, state: state, recordedAtMs: at, sequence: sequence)
}

func points(_ pseudonym: String, sequence: UInt64, count: Int, speedKmh: UInt32, tile: Int64 = 7, startMs: Int64 = t0) -> [ProbePoint] {
    (0..<count).map {
        ProbePoint(
            pseudonym: pseudonym, sequence: sequence, pointIndex: $0, tMs: startMs + Int64($0) * 1000,
            latE7: 556_761_000, lonE7: 125_683_000, speedDkmh: speedKmh * 10, headingDeg: 90, tile: tile)
    }
}

/// Runs `body` with a new empty store of `kind`, removing it afterwards.
func withStore(_ kind: StoreKind, _ body: (any TelematicsStore) async throws -> Void) async throws {
    let (store, remove) = try await kind.makeStore()
    do {
        try await body(store)
    } catch {
        await remove()
        throw error
    }
    await remove()
}

/// The behaviour every store must show, run against SQLite and PostgreSQL.
@Suite("A telematics store")
struct StoreBehaviourTests {
    @Test("a batch whose caller is cancelled is applied whole or not at all, and the store keeps working", arguments: StoreKind.allCases)
    func cancelledApply(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            // Cancelled at several moments, so some land inside the transaction.
            for (round, delay) in [0, 1, 3, 6, 12, 25].enumerated() {
                let owner = vin(10 + round)
                let big = StoreBatch(
                    teleserviceCalls: (1...300).map { call(owner, UInt64($0), items: [oil(.dueSoon)]) },
                    probePoints: (0..<20).flatMap { points("p-\(round)-\($0)", sequence: UInt64($0), count: 50, speedKmh: 60) })
                let applying = Task { try await store.apply(big) }
                try await Task.sleep(for: .milliseconds(delay))
                applying.cancel()
                _ = await applying.result
                let calls = try await store.teleserviceCalls(owner).count
                #expect(calls == 0 || calls == 300, "round \(round): half a batch (\(calls) calls)")
                // The connection is not left inside a transaction: the next batch applies.
                let next = try await store.apply(StoreBatch(teleserviceCalls: [call(vin(2), UInt64(round + 1))]))
                #expect(next.callsInserted == 1, "round \(round)")
            }
        }
    }

    @Test("applying the same batch twice writes nothing the second time", arguments: StoreKind.allCases)
    func idempotentBatch(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1), b = vin(2)
            let batch = StoreBatch(
                consentChanges: [consent(a, at: t0)],
                teleserviceCalls: [
                    call(a, 1, items: [oil(.dueSoon)], controls: [CheckControl(code: 77, severity: .warning)]),
                    call(b, 1, items: [oil(.ok)]),
                ],
                chargeSessions: [session(a, "s1"), session(b, "s2")],
                probePoints: points("p-a", sequence: 5, count: 10, speedKmh: 50) + points("p-b", sequence: 9, count: 4, speedKmh: 70))
            let first = try await store.apply(batch)
            #expect(first.consentsApplied == 1)
            #expect(first.callsInserted == 2)
            #expect(first.vehicleStatesUpdated == 2)
            #expect(first.casesOpened == 2)
            #expect(first.sessionsInserted == 2)
            #expect(first.probePointsInserted == 14)
            // A probe is one row with its points packed; they read back whole.
            #expect(try await store.probePoints(pseudonym: "p-b") == points("p-b", sequence: 9, count: 4, speedKmh: 70))
            let stats = try await store.stats()
            let aggregates = try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0)

            let second = try await store.apply(batch)
            #expect(!second.wroteAnything)
            #expect(second.consentsIgnored == 1)
            #expect(second.callsAlreadyPresent == 2)
            #expect(second.sessionsAlreadyPresent == 2)
            #expect(second.probePointsAlreadyPresent == 14)
            #expect(second.casesOpened + second.casesUpdated + second.casesClosed == 0)
            #expect(try await store.stats() == stats)
            #expect(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0) == aggregates)
            #expect(stats.teleserviceCalls == 2 && stats.maintenanceCases == 2 && stats.chargeSessions == 2 && stats.probePoints == 14)
        }
    }

    @Test("an older consent state does not override a newer one; the latest by time, then sequence, wins",
          arguments: StoreKind.allCases)
    func consentLatestWins(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            var newer = consent(a, at: t0 + 2000, sequence: 5)
            newer.state.rtti = false
            _ = try await store.apply(StoreBatch(consentChanges: [newer]))
            let older = try await store.apply(StoreBatch(consentChanges: [consent(a, at: t0 + 1000, sequence: 9)]))
            #expect(older.consentsIgnored == 1 && older.consentsApplied == 0)
            #expect(try await store.consent(for: [a])[a] == StoredConsent(state: newer.state, recordedAtMs: t0 + 2000, sequence: 5))

            // Same time, higher sequence: newer.
            let tie = consent(a, at: t0 + 2000, sequence: 6)
            #expect(try await store.apply(StoreBatch(consentChanges: [tie])).consentsApplied == 1)
            #expect(try await store.consent(for: [a, vin(2)]) == [a: StoredConsent(state: tie.state, recordedAtMs: t0 + 2000, sequence: 6)])

            // Within one batch the order of the changes does not matter either.
            let b = vin(3)
            let result = try await store.apply(StoreBatch(consentChanges: [consent(b, at: t0 + 10, sequence: 2), consent(b, at: t0, sequence: 1)]))
            #expect(result.consentsApplied == 1 && result.consentsIgnored == 1)
            #expect(try await store.consent(for: [b])[b]?.recordedAtMs == t0 + 10)
        }
    }

    @Test("switching charging history off, or deleting the account, deletes that vehicle's charge sessions",
          arguments: StoreKind.allCases)
    func consentDeletesSessions(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1), b = vin(2)
            _ = try await store.apply(StoreBatch(chargeSessions: [session(a, "a1"), session(a, "a2"), session(b, "b1")]))

            let off = try await store.apply(StoreBatch(consentChanges: [consent(a, at: t0, chargingHistory: false)]))
            #expect(off.sessionsDeletedByConsent == 2)
            #expect(try await store.chargeSessions(a).isEmpty)
            #expect(try await store.chargeSessions(b).count == 1)

            let deleted = try await store.apply(StoreBatch(consentChanges: [consent(b, at: t0, accountDeleted: true)]))
            #expect(deleted.sessionsDeletedByConsent == 1)
            #expect(try await store.chargeSessions(b).isEmpty)

            // An older "off" that loses to the stored state deletes nothing.
            _ = try await store.apply(StoreBatch(
                consentChanges: [consent(a, at: t0 + 5000, sequence: 3)], chargeSessions: [session(a, "a3")]))
            let stale = try await store.apply(StoreBatch(consentChanges: [consent(a, at: t0 + 1000, chargingHistory: false)]))
            #expect(stale.sessionsDeletedByConsent == 0 && stale.consentsIgnored == 1)
            #expect(try await store.chargeSessions(a).map(\.sessionID) == ["a3"])
        }
    }

    @Test("a maintenance need opens a case, a later call updates it, a call reporting it gone closes it",
          arguments: StoreKind.allCases)
    func caseLifecycle(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            let opened = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 1, items: [oil(.dueSoon)], partner: "p-1")]))
            #expect(opened.casesOpened == 1)
            var cases = try await store.maintenanceCases(a, includeClosed: false)
            #expect(cases.count == 1)
            #expect(cases.first?.need == .service(.engineOil))
            #expect(cases.first?.state == .open)
            #expect(cases.first?.servicePartnerID == "p-1")
            #expect(cases.first?.openedAtMs == t0 + 1000)

            let updated = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 2, items: [oil(.overdue)], partner: "p-2")]))
            #expect(updated.casesUpdated == 1 && updated.casesOpened == 0)
            cases = try await store.maintenanceCases(a, includeClosed: false)
            #expect(cases.count == 1)
            #expect(cases.first?.state == .updated)
            #expect(cases.first?.servicePartnerID == "p-2")
            #expect(cases.first?.updatedAtMs == t0 + 2000)
            #expect(cases.first?.notifications == 2)
            #expect(cases.first?.lastSequence == 2)

            let closed = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 3, items: [oil(.ok)])]))
            #expect(closed.casesClosed == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: false).isEmpty)
            let all = try await store.maintenanceCases(a, includeClosed: true)
            #expect(all.count == 1)
            #expect(all.first?.state == .closed)
            #expect(all.first?.closedAtMs == t0 + 3000)

            // The need coming back opens a new case.
            let again = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 4, items: [oil(.dueSoon)])]))
            #expect(again.casesOpened == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: true).count == 2)
        }
    }

    @Test("while in a workshop no case is opened or re-notified, but a need reported gone closes its case",
          arguments: StoreKind.allCases)
    func workshopStay(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            let brakes = ServiceItem(type: ServiceItemType(rawValue: 2), status: .overdue)
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 1, items: [brakes])]))
            let inWorkshop = try await store.apply(StoreBatch(teleserviceCalls: [
                call(a, 2, items: [brakes, oil(.dueSoon)], controls: [CheckControl(code: 5, severity: .critical)], inWorkshop: true),
            ]))
            #expect(inWorkshop.casesOpened == 0 && inWorkshop.casesUpdated == 0)
            let cases = try await store.maintenanceCases(a, includeClosed: false)
            #expect(cases.map(\.need) == [.service(ServiceItemType(rawValue: 2))])
            #expect(cases.first?.notifications == 1)

            var fixed = brakes
            fixed.status = .ok
            let done = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 3, items: [fixed], inWorkshop: true)]))
            #expect(done.casesClosed == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: false).isEmpty)
        }
    }

    @Test("a check-control case closes when its message is no longer active", arguments: StoreKind.allCases)
    func checkControlCloses(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            let first = try await store.apply(StoreBatch(teleserviceCalls: [
                call(a, 1, controls: [CheckControl(code: 123, severity: .warning), CheckControl(code: 456, severity: .info)]),
            ]))
            #expect(first.casesOpened == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: false).map(\.need) == [.checkControl(code: 123)])
            #expect(try await store.vehicleState(a)?.checkControls.count == 2)

            let second = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 2, controls: [CheckControl(code: 456, severity: .info)])]))
            #expect(second.casesClosed == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: false).isEmpty)
            #expect(try await store.vehicleState(a)?.checkControls == [CheckControl(code: 456, severity: .info)])
        }
    }

    @Test("a vehicle has at most one open case per need, across calls in one batch and across batches",
          arguments: StoreKind.allCases)
    func oneOpenCasePerNeed(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1), b = vin(2)
            let result = try await store.apply(StoreBatch(teleserviceCalls: [
                call(a, 1, items: [oil(.dueSoon)]), call(a, 2, items: [oil(.dueSoon)]), call(b, 1, items: [oil(.overdue)]),
                call(a, 3, items: [oil(.overdue), oil(.overdue)]),
            ]))
            #expect(result.casesOpened == 2)
            #expect(result.casesUpdated == 2)
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 4, items: [oil(.overdue)])]))
            let cases = try await store.maintenanceCases(a, includeClosed: true)
            #expect(cases.count == 1)
            #expect(cases.first?.notifications == 4)
            #expect(try await store.maintenanceCases(b, includeClosed: true).count == 1)

            // Closed and re-opened within one batch: one closed case, one open.
            let churn = try await store.apply(StoreBatch(teleserviceCalls: [
                call(a, 5, items: [oil(.ok)]), call(a, 6, items: [oil(.dueSoon)]),
            ]))
            #expect(churn.casesClosed == 1 && churn.casesOpened == 1)
            let after = try await store.maintenanceCases(a, includeClosed: true)
            #expect(after.map(\.state) == [.closed, .open])
        }
    }

    @Test("a redelivered call does not re-apply its case changes or its technical state", arguments: StoreKind.allCases)
    func redeliveredCall(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            let first = call(a, 1, items: [oil(.dueSoon)])
            _ = try await store.apply(StoreBatch(teleserviceCalls: [first]))
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 2, items: [oil(.ok)])]))
            let again = try await store.apply(StoreBatch(teleserviceCalls: [first]))
            #expect(again.callsAlreadyPresent == 1 && again.callsInserted == 0)
            #expect(again.casesOpened == 0 && again.vehicleStatesUpdated == 0)
            #expect(try await store.maintenanceCases(a, includeClosed: false).isEmpty)
            #expect(try await store.vehicleState(a)?.sequence == 2)

            // A batch mixing a stored call with a new one, the new one
            // repeated: only the new call counts, and only once.
            let b = vin(2)
            let new = call(b, 1, items: [oil(.dueSoon)])
            let mixed = try await store.apply(StoreBatch(teleserviceCalls: [first, new, new]))
            #expect(mixed.callsInserted == 1 && mixed.callsAlreadyPresent == 2)
            #expect(mixed.casesOpened == 1 && mixed.vehicleStatesUpdated == 1)
            #expect(try await store.maintenanceCases(a, includeClosed: false).isEmpty)
            #expect(try await store.maintenanceCases(b, includeClosed: false).map(\.lastSequence) == [1])
            #expect(try await store.teleserviceCalls(b).count == 1)
        }
    }

    @Test("the technical state follows the newest call even when calls arrive out of order", arguments: StoreKind.allCases)
    func technicalStateNewestWins(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            _ = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 5, items: [oil(.ok)])]))
            let late = try await store.apply(StoreBatch(teleserviceCalls: [call(a, 3, items: [oil(.overdue)])]))
            #expect(late.callsInserted == 1 && late.vehicleStatesUpdated == 0)
            let state = try #require(try await store.vehicleState(a))
            #expect(state.sequence == 5 && state.mileageKm == 10_005 && state.battery12vMv == 12_400)
            #expect(state.serviceItems == [oil(.ok)])
            #expect(try await store.vehicleState(vin(9)) == nil)

            let calls = try await store.teleserviceCalls(a)
            #expect(calls.map(\.sequence) == [3, 5])
            #expect(calls.last == call(a, 5, items: [oil(.ok)]))
        }
    }

    @Test("a charge session is stored once per vehicle and session id, its sealed position kept as bytes",
          arguments: StoreKind.allCases)
    func chargeSessionOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            var plain = session(a, "s2", sequence: 2)
            plain.sealedPosition = nil
            plain.keyID = nil
            let result = try await store.apply(StoreBatch(chargeSessions: [session(a, "s1"), session(a, "s1", sequence: 7), plain]))
            #expect(result.sessionsInserted == 2 && result.sessionsAlreadyPresent == 1)
            let again = try await store.apply(StoreBatch(chargeSessions: [session(a, "s1")]))
            #expect(again.sessionsInserted == 0 && again.sessionsAlreadyPresent == 1)
            let stored = try await store.chargeSessions(a)
            #expect(stored.count == 2)
            #expect(stored.first(where: { $0.sessionID == "s1" }) == session(a, "s1"))
            #expect(stored.first(where: { $0.sessionID == "s2" }) == plain)
        }
    }

    @Test("traffic aggregates count each point once under redelivery, with distinct vehicles, mean and p85 speed",
          arguments: StoreKind.allCases)
    func probeAggregates(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let slow = points("p-a", sequence: 1, count: 10, speedKmh: 30)
            let fast = points("p-b", sequence: 1, count: 10, speedKmh: 100)
            _ = try await store.apply(StoreBatch(probePoints: slow))
            // Redelivery overlapping new points of the same vehicle and minute.
            let more = points("p-a", sequence: 2, count: 5, speedKmh: 30, startMs: t0 + 30_000)
            let result = try await store.apply(StoreBatch(probePoints: slow + fast + more))
            #expect(result.probePointsInserted == 15 && result.probePointsAlreadyPresent == 10)
            _ = try await store.apply(StoreBatch(probePoints: fast))
            #expect(try await store.probePointCount() == 25)

            let aggregates = try await store.trafficAggregates(tile: 7, fromMinute: t0 - 60_000, toMinute: t0 + 60_000)
            #expect(aggregates.count == 1)
            let minute = try #require(aggregates.first)
            #expect(minute.minuteMs == t0)
            #expect(minute.pointCount == 25)
            #expect(minute.vehicleCount == 2)
            #expect(abs(minute.meanSpeedKmh - (15 * 30 + 10 * 100) / 25.0) < 1e-9)
            // Sorted speeds: 15 x 30, 10 x 100; the 85th percentile is 100 km/h,
            // exact to the histogram's 5 km/h bucket.
            #expect(minute.p85SpeedKmh >= 100 && minute.p85SpeedKmh <= 105)
            #expect(minute.histogram.total == 25)

            // Another tile and the next minute are separate aggregates.
            _ = try await store.apply(StoreBatch(probePoints: points("p-a", sequence: 3, count: 2, speedKmh: 10, tile: 8, startMs: t0 + 60_000)))
            #expect(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0 + 120_000).count == 1)
            let other = try await store.trafficAggregates(tile: 8, fromMinute: t0, toMinute: t0 + 120_000)
            #expect(other.map(\.minuteMs) == [t0 + 60_000])
            #expect(other.first?.vehicleCount == 1)
        }
    }

    @Test("an aggregate's vehicle set: an erased vehicle leaves it and the others stay counted once; retention clears it and keeps the counts",
          arguments: StoreKind.allCases)
    func vehicleSets(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            _ = try await store.apply(StoreBatch(probePoints: points("p-a", sequence: 1, count: 3, speedKmh: 30) + points("p-b", sequence: 1, count: 3, speedKmh: 40)))
            #expect(try await store.stats().trafficVehicles == 2)
            let erasure = try await store.erase(VIN("WMW11DJ0X02A00001")!, pseudonyms: ["p-a"])
            #expect(erasure.deleted["traffic_vehicles"] == 1)
            #expect(try await store.stats().trafficVehicles == 1)
            // p-b is still in the set: its next probe in the minute is no new vehicle.
            _ = try await store.apply(StoreBatch(probePoints: points("p-b", sequence: 2, count: 2, speedKmh: 40, startMs: t0 + 10_000)))
            var minute = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
            #expect(minute.vehicleCount == 2 && minute.pointCount == 8)
            // Retention clears the set with the raw points; the counts stay.
            #expect(try await store.sweep(.trafficMemberships, before: t0 + 60_000, limit: 100) == 1)
            #expect(try await store.sweep(.trafficMemberships, before: t0 + 60_000, limit: 100) == 0)
            #expect(try await store.stats().trafficVehicles == 0)
            minute = try #require(try await store.trafficAggregates(tile: 7, fromMinute: t0, toMinute: t0).first)
            #expect(minute.vehicleCount == 2 && minute.pointCount == 8)
        }
    }

    @Test("a batch that fails midway leaves nothing half-written", arguments: StoreKind.allCases)
    func failedBatchRollsBack(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let a = vin(1)
            let before = try await store.stats()
            var batch = StoreBatch(
                consentChanges: [consent(a, at: t0)],
                teleserviceCalls: [call(a, 1, items: [oil(.overdue)])],
                chargeSessions: [session(a, "s1")],
                probePoints: points("p-a", sequence: 1, count: 3, speedKmh: 40))
            // An empty pseudonym breaks the schema's rule, in the last step of the batch.
            batch.probePoints.append(ProbePoint(pseudonym: "", sequence: 1, pointIndex: 99, tMs: t0, speedDkmh: 1, tile: 7))
            let error = await #expect(throws: StoreError.self) { try await store.apply(batch) }
            #expect(error?.backend == kind.backend)
            #expect(error?.operation == "apply")
            #expect(try await store.stats() == before)
            #expect(try await store.consent(for: [a]).isEmpty)

            // The store goes on working; the same batch without the bad point applies whole.
            batch.probePoints.removeLast()
            let result = try await store.apply(batch)
            #expect(result.callsInserted == 1 && result.casesOpened == 1 && result.sessionsInserted == 1 && result.probePointsInserted == 3)
        }
    }

    @Test("a batch of 10,000 records applies in reasonable time, and its redelivery too", arguments: StoreKind.allCases)
    func largeBatch(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let vehicles = (0..<500).map { vin($0) }
            var batch = StoreBatch()
            batch.consentChanges = vehicles.map { consent($0, at: t0) }
            for (i, v) in vehicles.enumerated() {
                for s in 1...4 {
                    batch.teleserviceCalls.append(call(v, UInt64(s), items: [oil(s % 2 == 0 ? .overdue : .dueSoon)],
                                                       controls: i % 3 == 0 ? [CheckControl(code: UInt32(s), severity: .warning)] : []))
                }
                for s in 0..<4 { batch.chargeSessions.append(session(v, "s\(s)")) }
            }
            for p in 0..<100 {
                batch.probePoints += points("pseudo-\(p)", sequence: 1, count: 50, speedKmh: UInt32(20 + p), tile: Int64(p % 10))
            }
            #expect(batch.count == 500 + 2000 + 2000 + 5000)

            let clock = ContinuousClock()
            var first = StoreBatchResult()
            let firstTime = try await clock.measure { first = try await store.apply(batch) }
            var second = StoreBatchResult()
            let secondTime = try await clock.measure { second = try await store.apply(batch) }
            print("[\(kind)] 10,000-record batch: \(firstTime) first, \(secondTime) redelivered")
            #expect(first.callsInserted == 2000 && first.sessionsInserted == 2000 && first.probePointsInserted == 5000)
            // One oil case per vehicle; every third vehicle also opens a check-control
            // case per call, each closing the one before.
            #expect(first.casesOpened == 500 + 167 * 4 && first.casesClosed == 167 * 3 && first.casesUpdated == 500 * 3)
            #expect(!second.wroteAnything)
            #expect(firstTime < .seconds(30))
            #expect(secondTime < .seconds(30))
        }
    }
}

extension StoreKind {
    var backend: StoreBackend {
        switch self {
        case .sqlite: .sqlite
        case .postgres: .postgres
        }
    }
}

/// Failures that belong to one backend's setup.
@Suite("Opening a store")
struct StoreOpeningTests {
    @Test("a data directory that cannot be created is a clear StoreError, not a crash")
    func uncreatableDirectory() async throws {
        let error = await #expect(throws: StoreError.self) { _ = try await SQLiteStore(directory: "/etc/hostname/data") }
        #expect(error?.backend == .sqlite)
        #expect(error?.message.contains("/etc/hostname/data") == true)
    }

    @Test("reopening a SQLite data directory keeps the data and the schema version")
    func reopen() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("telematics-reopen-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try await SQLiteStore(directory: directory)
        _ = try await store.apply(StoreBatch(teleserviceCalls: [call(vin(1), 1)]))
        await store.close()
        await #expect(throws: StoreError.self) { _ = try await store.stats() }
        let again = try await SQLiteStore(directory: directory)
        #expect(try await again.stats().teleserviceCalls == 1)
        await again.close()
    }

    @Test("a PostgreSQL URL that cannot be used is a clear StoreError")
    func badURL() async throws {
        for url in ["mysql://x@h/db", "postgres://h/db", "postgres://u@h/", "postgres://u@h/db?sslmode=require"] {
            let error = await #expect(throws: StoreError.self) { _ = try await PostgresStore(url: url) }
            #expect(error?.backend == .postgres)
            #expect(error?.operation == "open")
        }
        let refused = await #expect(throws: StoreError.self) {
            _ = try await PostgresStore(url: "postgres://u:secret@127.0.0.1:1/db")
        }
        #expect(refused?.message.contains("secret") == false)
    }
}
