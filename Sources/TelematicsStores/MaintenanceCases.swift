import TelematicsWire

/// Something a vehicle needs a workshop for (RULES.md): a service item that
/// is due soon or overdue, or a check-control message of severity warning
/// or critical. A vehicle has at most one case not closed per need.
public enum MaintenanceNeed: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// A condition-based service item of this type.
    case service(ServiceItemType)
    /// A check-control message with this code.
    case checkControl(code: UInt32)

    /// The stored key: "service:<TYPE name or number>" or "check_control:<code>".
    public var key: String {
        switch self {
        case .service(let type): "service:\(type.description)"
        case .checkControl(let code): "check_control:\(code)"
        }
    }

    /// The need a stored key names; nil for a key this version cannot read.
    public init?(key: String) {
        if key.hasPrefix("service:") {
            let name = key.dropFirst("service:".count)
            if let index = ServiceItemType.names.firstIndex(where: { "\($0)" == name }) {
                self = .service(ServiceItemType(rawValue: Int32(index)))
            } else if let number = Int32(name) {
                self = .service(ServiceItemType(rawValue: number))
            } else {
                return nil
            }
        } else if key.hasPrefix("check_control:"), let code = UInt32(key.dropFirst("check_control:".count)) {
            self = .checkControl(code: code)
        } else {
            return nil
        }
    }

    /// The key.
    public var description: String { key }

    /// Orders by key, so transitions come out in a stable order.
    public static func < (a: MaintenanceNeed, b: MaintenanceNeed) -> Bool { a.key < b.key }
}

/// Where a maintenance case is in its life.
public enum CaseState: String, Hashable, Sendable, CaseIterable {
    /// Opened; the service partner was notified once.
    case open
    /// A later call reported the need again; the partner was re-notified.
    case updated
    /// A later call reported the need gone.
    case closed
}

/// One maintenance case: a need of one vehicle, for its service partner.
public struct MaintenanceCase: Hashable, Sendable {
    /// The store's id; nil for a case not stored yet.
    public var id: Int64?
    /// The vehicle.
    public var vin: VIN
    /// What the vehicle needs.
    public var need: MaintenanceNeed
    /// Open, updated or closed.
    public var state: CaseState
    /// The service partner the case went to (the latest call's).
    public var servicePartnerID: String
    /// When the call that opened the case was recorded.
    public var openedAtMs: Int64
    /// When the latest re-notifying call was recorded, if any.
    public var updatedAtMs: Int64?
    /// When the call that closed the case was recorded, if closed.
    public var closedAtMs: Int64?
    /// Sequence of the last call that changed the case.
    public var lastSequence: UInt64
    /// How often the partner was notified: 1 at opening, +1 per update.
    public var notifications: Int

    /// A case from its parts.
    public init(
        id: Int64? = nil, vin: VIN, need: MaintenanceNeed, state: CaseState = .open, servicePartnerID: String,
        openedAtMs: Int64, updatedAtMs: Int64? = nil, closedAtMs: Int64? = nil, lastSequence: UInt64,
        notifications: Int = 1
    ) {
        self.id = id
        self.vin = vin
        self.need = need
        self.state = state
        self.servicePartnerID = servicePartnerID
        self.openedAtMs = openedAtMs
        self.updatedAtMs = updatedAtMs
        self.closedAtMs = closedAtMs
        self.lastSequence = lastSequence
        self.notifications = notifications
    }
}

/// One step a teleservice call causes on a vehicle's maintenance cases.
public struct CaseChange: Hashable, Sendable {
    /// What happens to the case.
    public enum Kind: String, Hashable, Sendable {
        /// A new case for a need with none open.
        case open
        /// The need is still there: update the open case, re-notify the partner.
        case renotify
        /// The need is gone: close the case.
        case close
    }

    /// What happens.
    public var kind: Kind
    /// The vehicle.
    public var vin: VIN
    /// The need whose case changes.
    public var need: MaintenanceNeed
    /// The call's service partner.
    public var servicePartnerID: String
    /// The call's recorded time.
    public var atMs: Int64
    /// The call's sequence.
    public var sequence: UInt64

    /// A change from its parts.
    public init(kind: Kind, vin: VIN, need: MaintenanceNeed, servicePartnerID: String, atMs: Int64, sequence: UInt64) {
        self.kind = kind
        self.vin = vin
        self.need = need
        self.servicePartnerID = servicePartnerID
        self.atMs = atMs
        self.sequence = sequence
    }
}

/// The maintenance-case rules of RULES.md as pure functions, shared by every
/// store so SQLite and PostgreSQL cannot drift apart.
public enum MaintenanceCases {
    /// The changes one (newly stored) teleservice call causes, given the
    /// vehicle's cases that are not closed.
    ///
    /// - A need reported (service item DUE_SOON/OVERDUE, check-control
    ///   WARNING/CRITICAL) opens a case when none is open, else re-notifies
    ///   the open one; neither happens while the vehicle is in a workshop.
    /// - A need reported gone (its service item with status OK, or a
    ///   check-control case whose code is not among the call's active
    ///   messages) closes its case, in a workshop too.
    /// - A call older than the last call that changed a case (by sequence)
    ///   leaves that case alone: a late redelivery must not undo newer news.
    ///
    /// Cases of other vehicles and closed cases in `open` are ignored.
    /// Changes come out as: opens and re-notifies in the order the call
    /// lists the needs, then closes ordered by need.
    public static func transitions(open: [MaintenanceCase], call: TeleserviceCallRecord) -> [CaseChange] {
        var caseOf: [MaintenanceNeed: MaintenanceCase] = [:]
        for c in open where c.vin == call.vin && c.state != .closed && caseOf[c.need] == nil {
            caseOf[c.need] = c
        }

        // A repeated service type takes its last status, as a protobuf
        // reader would take the last value of a repeated scalar.
        var serviceOrder: [ServiceItemType] = []
        var statusOf: [ServiceItemType: ServiceStatus] = [:]
        for item in call.serviceItems {
            if statusOf.updateValue(item.status, forKey: item.type) == nil { serviceOrder.append(item.type) }
        }
        var reported: [MaintenanceNeed] = []
        var gone: [MaintenanceNeed] = []
        for type in serviceOrder {
            switch statusOf[type] {
            case ServiceStatus.dueSoon, ServiceStatus.overdue: reported.append(.service(type))
            case ServiceStatus.ok: gone.append(.service(type))
            default: break  // unspecified or unknown: says nothing either way
            }
        }
        var activeCodes: Set<UInt32> = []
        var seenCodes: Set<UInt32> = []
        for control in call.checkControls {
            activeCodes.insert(control.code)
            if control.severity == .warning || control.severity == .critical, seenCodes.insert(control.code).inserted {
                reported.append(.checkControl(code: control.code))
            }
        }
        for need in caseOf.keys {
            if case .checkControl(let code) = need, !activeCodes.contains(code) { gone.append(need) }
        }

        func change(_ kind: CaseChange.Kind, _ need: MaintenanceNeed) -> CaseChange {
            CaseChange(
                kind: kind, vin: call.vin, need: need, servicePartnerID: call.servicePartnerID,
                atMs: call.recordedAtMs, sequence: call.sequence)
        }
        var changes: [CaseChange] = []
        for need in reported where !call.inWorkshop {
            if let existing = caseOf[need] {
                if call.sequence > existing.lastSequence { changes.append(change(.renotify, need)) }
            } else {
                changes.append(change(.open, need))
            }
        }
        for need in gone.sorted() {
            if let existing = caseOf[need], call.sequence > existing.lastSequence {
                changes.append(change(.close, need))
            }
        }
        return changes
    }

    /// The case after `change`: a new case for `.open`; for `.renotify` and
    /// `.close` the `existing` case of the need changed (nil without one).
    public static func applying(_ change: CaseChange, to existing: MaintenanceCase?) -> MaintenanceCase? {
        if change.kind == .open {
            return MaintenanceCase(
                vin: change.vin, need: change.need, servicePartnerID: change.servicePartnerID,
                openedAtMs: change.atMs, lastSequence: change.sequence)
        }
        guard var c = existing else { return nil }
        switch change.kind {
        case .open:
            break  // handled above
        case .renotify:
            c.state = .updated
            c.updatedAtMs = change.atMs
            c.servicePartnerID = change.servicePartnerID
            c.notifications += 1
        case .close:
            c.state = .closed
            c.closedAtMs = change.atMs
        }
        c.lastSequence = change.sequence
        return c
    }
}

/// The cases a batch of calls touches, kept in memory while the calls are
/// processed in order, then written back in two batched statements (updates
/// of stored cases, inserts of new ones).
struct CaseBook {
    /// Every case known: the stored open ones first, then new ones.
    private(set) var cases: [MaintenanceCase]
    /// Index into `cases` of each vehicle's non-closed case per need.
    private var openIndex: [VIN: [MaintenanceNeed: Int]] = [:]
    /// Indices of stored cases that changed.
    private var changedStored: Set<Int> = []
    /// Opens, re-notifies and closes so far.
    private(set) var opened = 0, renotified = 0, closed = 0

    /// A book over the stored cases not closed of the batch's vehicles.
    init(openCases: [MaintenanceCase]) {
        cases = openCases
        for (i, c) in openCases.enumerated() where c.state != .closed {
            openIndex[c.vin, default: [:]][c.need] = i
        }
    }

    /// Applies what `call` causes (it must be a newly stored call).
    mutating func process(_ call: TeleserviceCallRecord) {
        let indices = openIndex[call.vin] ?? [:]
        let open = indices.values.sorted().map { cases[$0] }
        for change in MaintenanceCases.transitions(open: open, call: call) {
            switch change.kind {
            case .open:
                guard let new = MaintenanceCases.applying(change, to: nil) else { continue }
                cases.append(new)
                openIndex[call.vin, default: [:]][change.need] = cases.count - 1
                opened += 1
            case .renotify, .close:
                guard let i = indices[change.need], let changed = MaintenanceCases.applying(change, to: cases[i])
                else { continue }
                cases[i] = changed
                if cases[i].id != nil { changedStored.insert(i) }
                if change.kind == .close {
                    openIndex[call.vin]?[change.need] = nil
                    closed += 1
                } else {
                    renotified += 1
                }
            }
        }
    }

    /// Stored cases that changed, in their final state.
    var updates: [MaintenanceCase] { changedStored.sorted().map { cases[$0] } }

    /// New cases in their final state, in the order they were opened.
    var inserts: [MaintenanceCase] { cases.filter { $0.id == nil } }
}
