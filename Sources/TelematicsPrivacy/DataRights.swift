import CallCentre
import Foundation
import TelematicsPipeline
import TelematicsStores
import TelematicsWire

/// A data subject's rights per vehicle (RULES.md, 003:922-954): a copy of
/// everything stored about it, from every store, as one JSON document, and
/// its erasure everywhere except what RULES.md keeps.
///
/// Raw RTTI probes carry no VIN, only the day's pseudonym: the vehicle's
/// pseudonyms of every day raw points may still be stored (the raw-probes
/// period, plus two days for late records and clock skew) find them.
public struct DataRights: Sendable {
    public let store: any TelematicsStore
    public let alerts: (any AlertStore)?
    public let secrets: PipelineSecrets
    public let policy: RetentionPolicy
    /// The clock (ms since the epoch).
    public let now: @Sendable () -> Int64

    public init(
        store: any TelematicsStore, alerts: (any AlertStore)?, secrets: PipelineSecrets, policy: RetentionPolicy,
        now: @escaping @Sendable () -> Int64
    ) {
        self.store = store
        self.alerts = alerts
        self.secrets = secrets
        self.policy = policy
        self.now = now
    }

    /// The vehicle's pseudonyms of the days its raw points may be stored, newest day first.
    public func pseudonyms(of vin: VIN) -> [(day: Int64, pseudonym: String)] {
        let pseudonymizer = Pseudonymizer(key: secrets.pseudonymKey)
        let nowMs = now()
        let last = Pseudonymizer.day(ofMs: nowMs + 86_400_000)
        let first = Pseudonymizer.day(ofMs: nowMs - policy[.rawProbes] - 86_400_000)
        return stride(from: last, through: first, by: -1).map { ($0, pseudonymizer.pseudonym(of: vin, day: $0)) }
    }

    /// Everything stored about `vin` as one JSON document: consent, technical
    /// state, teleservice calls, maintenance cases, charge sessions with
    /// their positions opened, raw traffic probes under its pseudonyms, and
    /// call-centre alerts.
    public func export(_ vin: VIN) async throws(StoreError) -> JSON {
        let sealer = PositionSealer(keyID: secrets.sealingKeyID, keys: secrets.sealingKeys)
        let sessions = try await store.chargeSessions(vin).map { Self.opened($0, sealer: sealer) }
        var probes: [JSON] = []
        for (day, pseudonym) in pseudonyms(of: vin) {
            let points = try await store.probePoints(pseudonym: pseudonym)
            guard !points.isEmpty else { continue }
            probes.append(.object([
                ("pseudonym", .string(pseudonym)), ("day", .int(day)),
                ("points", .array(points.map { p in
                    .object([
                        ("sequence", .int(p.sequence)), ("index", .int(p.pointIndex)), ("t_ms", .int(p.tMs)),
                        ("lat_e7", .int(p.latE7)), ("lon_e7", .int(p.lonE7)), ("speed_dkmh", .int(p.speedDkmh)),
                        ("heading_deg", .int(p.headingDeg)),
                    ])
                })),
            ]))
        }
        let alertRecords = try await alerts?.alerts(vin: vin.description) ?? []
        let cases = try await store.maintenanceCases(vin, includeClosed: true)
        return .object([
            ("vin", .string(vin.description)),
            ("exported_at_ms", .int(now())),
            ("consent", try await store.consent(for: [vin])[vin].map(JSON.consent) ?? .null),
            ("technical_state", try await store.vehicleState(vin).map(JSON.technicalState) ?? .null),
            ("teleservice_calls", .array(try await store.teleserviceCalls(vin).map(JSON.call))),
            ("maintenance_cases", .array(cases.map(JSON.maintenanceCase))),
            ("charge_sessions", .array(sessions)),
            ("traffic_probes", .array(probes)),
            ("callcentre_alerts", .array(try alertRecords.map { r throws(StoreError) in try Self.alert(r, backend: store.backend) })),
            ("retention", .object(RetentionPolicy.Period.allCases.map { ($0.rawValue, .string(Duration.describeMs(policy[$0]))) })),
        ])
    }

    /// A stored session with its sealed parts opened: `session_id` the
    /// vehicle's id, `session_ref` what the store keys it by, `position`. A
    /// part sealed with a key no longer configured is named, not dropped.
    static func opened(_ s: ChargeSessionRecord, sealer: PositionSealer) -> JSON {
        guard case .object(var members) = JSON.session(s) else { return JSON.session(s) }
        var problems: [String] = []
        var sessionID = s.sessionID
        if let sealedID = s.sealedSessionID, let keyID = s.keyID {
            do {
                sessionID = try sealer.openSessionID(sealedID, keyID: keyID, vin: s.vin, reference: s.sessionID)
            } catch {
                problems.append("session id: \(error)")
            }
        }
        var position: Position?
        if let sealed = s.sealedPosition, !sealed.isEmpty, let keyID = s.keyID {
            do {
                position = try sealer.open(sealed, keyID: keyID, vin: s.vin, sessionID: s.sessionID)
            } catch {
                problems.append("position: \(error)")
            }
        }
        members = members.map { $0.0 == "session_id" ? ("session_id", .string(sessionID)) : $0 }
        members.append(("session_ref", .string(s.sessionID)))
        members.append(("position", JSON.position(position)))
        if !problems.isEmpty { members.append(("unreadable", .string(problems.joined(separator: "; ")))) }
        return .object(members)
    }

    /// An alert record as JSON (its own Codable form).
    static func alert(_ record: AlertRecord, backend: StoreBackend) throws(StoreError) -> JSON {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            return .raw(String(decoding: try encoder.encode(record), as: UTF8.self))
        } catch {
            throw StoreError(backend: backend, operation: "export", message: "alert \(record.id) cannot be written as JSON: \(error)")
        }
    }

    /// Erases `vin` from every store, one transaction per store (a failed
    /// store leaves nothing half-done there, and erasing again is safe), and
    /// says what was deleted and what was kept and why.
    public func erase(_ vin: VIN) async throws(StoreError) -> JSON {
        let erasure = try await store.erase(vin, pseudonyms: pseudonyms(of: vin).map(\.pseudonym))
        var stores: [(String, JSON)] = [("pipeline", Self.json(erasure))]
        if let alerts {
            let (deleted, keptOpen) = try await alerts.eraseAlerts(vin: vin.description)
            var alertErasure = Erasure(deleted: deleted > 0 ? ["callcentre_alerts": deleted] : [:])
            if keptOpen > 0 {
                alertErasure.kept["callcentre_alerts"] = .init(
                    rows: keptOpen,
                    reason: "open HV alerts stay until an agent acknowledges them (an emergency is never dropped); "
                        + "then retention or a new erase deletes them")
            }
            stores.append(("alerts", Self.json(alertErasure)))
        }
        return .object([("vin", .string(vin.description)), ("erased_at_ms", .int(now())), ("stores", .object(stores))])
    }

    static func json(_ erasure: Erasure) -> JSON {
        .object([
            ("deleted", .object(erasure.deleted.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
            ("kept", .object(erasure.kept.sorted { $0.key < $1.key }.map {
                ($0.key, .object([("rows", .int($0.value.rows)), ("reason", .string($0.value.reason))]))
            })),
        ])
    }
}

/// The console's privacy API (`/api/privacy/:vin/...`), answered here.
extension DataRights: VehicleDataRequests {
    public func export(vin: String) async throws -> String {
        guard let vin = VIN(vin) else { throw VehicleDataRequestError.badVIN(vin) }
        return try await export(vin).text
    }

    public func erase(vin: String) async throws -> String {
        guard let vin = VIN(vin) else { throw VehicleDataRequestError.badVIN(vin) }
        return try await erase(vin).text
    }
}
