@testable import TelematicsStores
import TelematicsWire
import Testing

/// The case rules as a pure function, without a database.
@Suite("Maintenance case transitions")
struct MaintenanceCasesTests {
    let a = vin(1)

    func openCase(_ need: MaintenanceNeed, lastSequence: UInt64 = 1, vin v: VIN? = nil) -> MaintenanceCase {
        MaintenanceCase(id: 1, vin: v ?? a, need: need, servicePartnerID: "p", openedAtMs: t0, lastSequence: lastSequence)
    }

    @Test("a service item due soon or overdue opens a case; OK or unspecified opens none")
    func serviceNeedsOpen() {
        let changes = MaintenanceCases.transitions(open: [], call: call(a, 2, items: [
            oil(.dueSoon), ServiceItem(type: .hvBatteryCheck, status: .overdue),
            ServiceItem(type: ServiceItemType(rawValue: 4), status: .ok), ServiceItem(type: ServiceItemType(rawValue: 5)),
        ], partner: "sp"))
        #expect(changes.map(\.kind) == [.open, .open])
        #expect(changes.map(\.need) == [.service(.engineOil), .service(.hvBatteryCheck)])
        #expect(changes.allSatisfy { $0.servicePartnerID == "sp" && $0.sequence == 2 && $0.atMs == t0 + 2000 })
    }

    @Test("a need still reported re-notifies its open case; reported OK closes it")
    func updateAndClose() {
        let renotify = MaintenanceCases.transitions(open: [openCase(.service(.engineOil))], call: call(a, 2, items: [oil(.overdue)]))
        #expect(renotify.map(\.kind) == [.renotify])
        let close = MaintenanceCases.transitions(open: [openCase(.service(.engineOil))], call: call(a, 2, items: [oil(.ok)]))
        #expect(close.map(\.kind) == [.close])
        // A call that does not mention the item leaves its case alone.
        #expect(MaintenanceCases.transitions(open: [openCase(.service(.engineOil))], call: call(a, 2)).isEmpty)
    }

    @Test("in a workshop nothing is opened or re-notified, but closing still happens")
    func workshop() {
        let open = [openCase(.service(.engineOil)), openCase(.checkControl(code: 9))]
        let changes = MaintenanceCases.transitions(open: open, call: call(
            a, 2, items: [oil(.overdue), ServiceItem(type: .hvBatteryCheck, status: .dueSoon)],
            controls: [CheckControl(code: 10, severity: .critical)], inWorkshop: true))
        #expect(changes.map(\.kind) == [.close])
        #expect(changes.map(\.need) == [.checkControl(code: 9)])
    }

    @Test("check-controls: warning and critical are needs, info is not; a case closes only when its code is gone")
    func checkControls() {
        let opened = MaintenanceCases.transitions(open: [], call: call(a, 2, controls: [
            CheckControl(code: 1, severity: .info), CheckControl(code: 2, severity: .warning), CheckControl(code: 3, severity: .critical),
            CheckControl(code: 2, severity: .warning),
        ]))
        #expect(opened.map(\.need) == [.checkControl(code: 2), .checkControl(code: 3)])

        let open = [openCase(.checkControl(code: 2)), openCase(.checkControl(code: 3))]
        let later = MaintenanceCases.transitions(open: open, call: call(a, 3, controls: [CheckControl(code: 2, severity: .info)]))
        #expect(later.map(\.kind) == [.close])
        #expect(later.map(\.need) == [.checkControl(code: 3)])
    }

    @Test("a call older than the case's last change leaves the case alone")
    func olderCallIgnored() {
        let open = [openCase(.service(.engineOil), lastSequence: 5)]
        #expect(MaintenanceCases.transitions(open: open, call: call(a, 4, items: [oil(.ok)])).isEmpty)
        #expect(MaintenanceCases.transitions(open: open, call: call(a, 5, items: [oil(.overdue)])).isEmpty)
    }

    @Test("cases of other vehicles and closed cases are not the call's business")
    func otherVehicles() {
        var closed = openCase(.service(.engineOil))
        closed.state = .closed
        let changes = MaintenanceCases.transitions(
            open: [openCase(.checkControl(code: 1), vin: vin(2)), closed], call: call(a, 2, items: [oil(.dueSoon)]))
        #expect(changes.map(\.kind) == [.open])
    }

    @Test("applying changes: open starts at one notification, renotify counts up, close keeps the rest")
    func applying() throws {
        let change = { (kind: CaseChange.Kind, seq: UInt64) in
            CaseChange(kind: kind, vin: self.a, need: .service(.engineOil), servicePartnerID: "p\(seq)", atMs: Int64(seq), sequence: seq)
        }
        var c = try #require(MaintenanceCases.applying(change(.open, 1), to: nil))
        #expect(c.state == .open && c.notifications == 1 && c.openedAtMs == 1 && c.id == nil)
        c = try #require(MaintenanceCases.applying(change(.renotify, 2), to: c))
        #expect(c.state == .updated && c.notifications == 2 && c.updatedAtMs == 2 && c.servicePartnerID == "p2")
        c = try #require(MaintenanceCases.applying(change(.close, 3), to: c))
        #expect(c.state == .closed && c.closedAtMs == 3 && c.lastSequence == 3 && c.servicePartnerID == "p2")
        #expect(MaintenanceCases.applying(change(.close, 4), to: nil) == nil)
    }

    @Test("need keys read back, unlisted service types as numbers")
    func needKeys() {
        for need in [MaintenanceNeed.service(.engineOil), .service(ServiceItemType(rawValue: 42)), .checkControl(code: 4_000_000_000)] {
            #expect(MaintenanceNeed(key: need.key) == need)
        }
        #expect(MaintenanceNeed.service(.engineOil).key == "service:TYPE_ENGINE_OIL")
        #expect(MaintenanceNeed.checkControl(code: 12).key == "check_control:12")
        #expect(MaintenanceNeed(key: "tyres:1") == nil)
    }

    @Test("the case book keeps one open case per need across the calls of a batch")
    func caseBook() {
        var book = CaseBook(openCases: [openCase(.service(.engineOil))])
        book.process(call(a, 2, items: [oil(.ok)]))
        book.process(call(a, 3, items: [oil(.dueSoon)]))
        book.process(call(a, 4, items: [oil(.overdue)]))
        #expect((book.opened, book.renotified, book.closed) == (1, 1, 1))
        #expect(book.updates.map(\.state) == [.closed])
        #expect(book.inserts.map(\.state) == [.updated])
        #expect(book.inserts.first?.notifications == 2)
    }
}

@Suite("Consent and traffic arithmetic")
struct StoreArithmeticTests {
    @Test("consent: the latest state wins, and every applied switch-off deletes sessions")
    func consentPlan() {
        let a = vin(1), b = vin(2)
        let stored = [a: StoredConsent(state: .defaults, recordedAtMs: t0, sequence: 3)]
        let plan = ConsentPlan(stored: stored, changes: [
            consent(a, at: t0 - 1, chargingHistory: false),  // older than stored: ignored
            consent(b, at: t0, sequence: 1, chargingHistory: false),
            consent(b, at: t0, sequence: 2),  // switched on again later, sessions still go
            consent(a, at: t0, sequence: 4),
        ])
        #expect(plan.applied == 3 && plan.ignored == 1)
        #expect(plan.deleteSessionsOf == [b])
        #expect(plan.finalStates.map(\.vin) == [b, a])
        #expect(plan.finalStates.first?.state.chargingHistory == true)
    }

    @Test("the speed histogram's p85 lies in the bucket of the true 85th percentile")
    func histogram() {
        var h = SpeedHistogram()
        #expect(h.percentileKmh(0.85) == 0)
        for speed in [UInt32](repeating: 500, count: 17) + [1200, 1200, 1200] { h.add(bucket: SpeedHistogram.bucket(speedDkmh: speed)) }
        #expect(h.percentileKmh(0.85) >= 50 && h.percentileKmh(0.85) <= 55)
        #expect(SpeedHistogram.bucket(speedDkmh: 49) == 0)
        #expect(SpeedHistogram.bucket(speedDkmh: 50) == 1)
        #expect(SpeedHistogram.bucket(speedDkmh: 2999) == 59)
        #expect(SpeedHistogram.bucket(speedDkmh: 5000) == SpeedHistogram.overflowBucket)
        var fast = SpeedHistogram()
        fast.add(bucket: SpeedHistogram.overflowBucket, count: 3)
        #expect(fast.percentileKmh(0.85) == 300)
    }

    @Test("a point's minute is its time floored to 60 s, before 1970 too")
    func minutes() {
        #expect(ProbePoint(pseudonym: "p", sequence: 1, pointIndex: 0, tMs: t0 + 59_999, speedDkmh: 0, tile: 0).minuteMs == t0)
        #expect(ProbePoint(pseudonym: "p", sequence: 1, pointIndex: 0, tMs: -1, speedDkmh: 0, tile: 0).minuteMs == -60_000)
        #expect(ProbePoint(pseudonym: "p", sequence: 1, pointIndex: 0, tMs: -60_000, speedDkmh: 0, tile: 0).minuteMs == -60_000)
    }
}
