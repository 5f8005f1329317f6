import Foundation

/// One call-centre alert as the desk keeps it: the alert last received for
/// its (VIN, event) with what the call centre did about it.
///
/// RULES.md: one alert per (VIN, event_id); repeats update it (latest
/// position and state) and do not page twice; it stays open until an agent
/// acknowledges it, and is escalated when not acknowledged in time.
public struct AlertRecord: Codable, Hashable, Sendable {
    /// "VIN/event_id" for an HV warn call; "VIN/call-<sequence>" for a
    /// breakdown or accident call (or a warn call without an event id).
    public var id: String
    /// The latest alert received; its `escalated` is true once the record is escalated.
    public var alert: CallCentreAlert
    /// When the pipeline first saw the alert (ms since the epoch): the escalation clock starts here.
    public var receivedAtMs: Int64
    /// When the alert was last updated by a repeat (ms since the epoch).
    public var updatedAtMs: Int64
    /// How many repeats updated it.
    public var updates: Int
    /// The agent who acknowledged it.
    public var acknowledgedBy: String?
    /// When it was acknowledged (ms since the epoch); nil while open.
    public var acknowledgedAtMs: Int64?
    /// When it was escalated (ms since the epoch); nil if it never was.
    public var escalatedAtMs: Int64?

    enum CodingKeys: String, CodingKey {
        case id, alert, updates
        case receivedAtMs = "received_at_ms", updatedAtMs = "updated_at_ms", acknowledgedBy = "acknowledged_by"
        case acknowledgedAtMs = "acknowledged_at_ms", escalatedAtMs = "escalated_at_ms"
    }

    /// A record from its parts.
    public init(
        id: String, alert: CallCentreAlert, receivedAtMs: Int64, updatedAtMs: Int64, updates: Int = 0,
        acknowledgedBy: String? = nil, acknowledgedAtMs: Int64? = nil, escalatedAtMs: Int64? = nil
    ) {
        self.id = id
        self.alert = alert
        self.receivedAtMs = receivedAtMs
        self.updatedAtMs = updatedAtMs
        self.updates = updates
        self.acknowledgedBy = acknowledgedBy
        self.acknowledgedAtMs = acknowledgedAtMs
        self.escalatedAtMs = escalatedAtMs
        self.alert.escalated = escalatedAtMs != nil
    }

    /// Not acknowledged yet.
    public var isOpen: Bool { acknowledgedAtMs == nil }
    /// Escalated (re-sent with `escalated: true`).
    public var isEscalated: Bool { escalatedAtMs != nil }

    /// The id of the record `alert` belongs to.
    public static func id(for alert: CallCentreAlert) -> String {
        if alert.priority == "P0", let event = alert.eventID, !event.isEmpty { return "\(alert.vin)/\(event)" }
        return "\(alert.vin)/call-\(alert.sequence)"
    }
}

/// What ``AlertStore/upsert(_:receivedAtMs:)`` did with an alert.
public enum AlertUpsert: Hashable, Sendable {
    /// A new alert: it pages the call centre.
    case new(AlertRecord)
    /// A newer repeat of a stored alert: position and state updated, no new page.
    case updated(AlertRecord)
    /// A repeat already seen (same or older sequence): nothing changed.
    case unchanged(AlertRecord)

    /// The record as stored after the upsert.
    public var record: AlertRecord {
        switch self {
        case .new(let r), .updated(let r), .unchanged(let r): r
        }
    }

    /// True for ``new(_:)``.
    public var isNew: Bool {
        if case .new = self { return true }
        return false
    }
}

/// Durable storage of call-centre alerts, separate from the bulk
/// ``TelematicsStore`` (its own connection), so that a slow bulk
/// transaction never delays an alert. Every write is idempotent.
public protocol AlertStore: Sendable {
    /// Stores received alerts, each as ``upsert(_:receivedAtMs:)`` says, in
    /// one transaction (one commit, one fsync), each as
    /// ``upsert(_:receivedAtMs:)`` would in the given order; the outcomes in that order.
    func upsert(_ alerts: [CallCentreAlert], receivedAtMs: Int64) async throws(StoreError) -> [AlertUpsert]
    /// Records who acknowledged the alert and when; the first
    /// acknowledgement wins, later ones return the record unchanged. Nil when
    /// there is no such alert.
    func acknowledge(id: String, by agent: String, atMs: Int64) async throws(StoreError) -> AlertRecord?
    /// Marks an open, not yet escalated alert escalated; the record, or nil
    /// when nothing changed (no such alert, acknowledged, or already escalated).
    func markEscalated(id: String, atMs: Int64) async throws(StoreError) -> AlertRecord?
    /// Escalated alerts whose escalation is not published yet (an outbox:
    /// a desk that failed to publish, or stopped before it did, leaves them
    /// here for the next round or the next desk), escalated at or before
    /// `escalatedAtOrBeforeMs`, oldest first, at most `limit`.
    func unpublishedEscalations(escalatedAtOrBeforeMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord]
    /// Notes that the alert's escalation was published (the first time counts).
    func markEscalationPublished(id: String, atMs: Int64) async throws(StoreError)
    /// One alert by id.
    func alert(id: String) async throws(StoreError) -> AlertRecord?
    /// Alerts, P0 before P1, then newest (first received) first; only open
    /// ones when `openOnly`, only one priority when `priority` is given.
    func alerts(openOnly: Bool, priority: String?, limit: Int) async throws(StoreError) -> [AlertRecord]
    /// Open alerts, not escalated yet, first received strictly before `receivedBeforeMs`, oldest first.
    func unacknowledgedOlderThan(receivedBeforeMs: Int64) async throws(StoreError) -> [AlertRecord]
    /// Deletes at most `limit` of the alerts whose event was recorded
    /// strictly before `recordedBeforeMs` (retention), in one short
    /// transaction, so alerts arriving meanwhile wait little; how many.
    func deleteAlerts(recordedBeforeMs: Int64, limit: Int) async throws(StoreError) -> Int
    /// Closes the connection; later calls fail.
    /// Alerts received, updated, acknowledged or escalated at or after
    /// `sinceMs` (by any instance sharing the store), oldest change first,
    /// at most `limit`: what a desk shows that another desk changed.
    func alerts(changedSinceMs sinceMs: Int64, limit: Int) async throws(StoreError) -> [AlertRecord]
    /// Alerts recorded before `recordedBeforeMs` (what retention would delete).
    func countAlerts(recordedBeforeMs: Int64) async throws(StoreError) -> Int
    /// Every alert of one vehicle, newest first (data-subject export).
    func alerts(vin: String) async throws(StoreError) -> [AlertRecord]
    /// Deletes the vehicle's acknowledged alerts in one transaction; open ones
    /// stay until an agent has handled them. Returns (deleted, kept open).
    func eraseAlerts(vin: String) async throws(StoreError) -> (deleted: Int, keptOpen: Int)
    func close() async
}

/// The rules shared by the backends, and the row format they store.
enum AlertRows {
    /// The stored columns, in the order every SELECT returns them.
    static let columns = "id, payload, received_at_ms, updated_at_ms, updates, acknowledged_by, acknowledged_at_ms, escalated_at_ms"
    /// An escalation not yet published.
    static let unpublishedEscalation = "escalated_at_ms IS NOT NULL AND escalation_published_at_ms IS NULL"
    /// Finds them without a scan (few at any time).
    static let unpublishedEscalationsIndex =
        "CREATE INDEX IF NOT EXISTS callcentre_alerts_escalation_outbox ON callcentre_alerts (escalated_at_ms) WHERE \(unpublishedEscalation)"

    /// The ORDER BY of listings: P0 before P1, newest first.
    static let listingOrder = "ORDER BY priority, received_at_ms DESC, id"

    /// Rows changed at or after the first bind (`$1` or `?1`).
    static func changedSince(_ p: String) -> String {
        "updated_at_ms >= \(p) OR acknowledged_at_ms >= \(p) OR escalated_at_ms >= \(p)"
    }

    /// The latest change of a row, for ordering.
    static let lastChange = "max(updated_at_ms, coalesce(acknowledged_at_ms, 0), coalesce(escalated_at_ms, 0))"

    /// The `LIKE` pattern of a vehicle's alert ids (`VIN/...`); VIN
    /// characters are never LIKE wildcards.
    static func idPattern(vin: String) -> String { vin + "/%" }

    /// What an alert does to the stored record (nil when there is none):
    /// the outcome, with the record to write for ``AlertUpsert/new(_:)``
    /// and ``AlertUpsert/updated(_:)``.
    static func merge(stored: AlertRecord?, incoming: CallCentreAlert, receivedAtMs: Int64) -> AlertUpsert {
        guard var record = stored else {
            return .new(AlertRecord(id: AlertRecord.id(for: incoming), alert: incoming, receivedAtMs: receivedAtMs, updatedAtMs: receivedAtMs))
        }
        guard incoming.sequence > record.alert.sequence else { return .unchanged(record) }
        var alert = incoming
        alert.escalated = record.isEscalated
        // Keep what a repeat may not carry (e.g. a position lost in a tunnel).
        if alert.position == nil { alert.position = record.alert.position }
        record.alert = alert
        record.updatedAtMs = max(record.updatedAtMs, receivedAtMs)
        record.updates += 1
        return .updated(record)
    }

    /// The payload column: the alert as JSON text.
    static func payload(_ alert: CallCentreAlert) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(alert), as: UTF8.self)
    }

    /// The alert of a payload column.
    static func alert(payload: String) throws -> CallCentreAlert {
        try JSONDecoder().decode(CallCentreAlert.self, from: Data(payload.utf8))
    }
}

extension AlertStore {
    /// Deletes every alert recorded before `recordedBeforeMs`, in
    /// transactions of at most `batch` alerts; how many.
    public func deleteAlerts(recordedBeforeMs: Int64, batch: Int = 2_000) async throws(StoreError) -> Int {
        var total = 0
        while true {
            let deleted = try await deleteAlerts(recordedBeforeMs: recordedBeforeMs, limit: batch)
            total += deleted
            if deleted < batch { return total }
        }
    }

    /// Stores a received alert: inserts it, updates the stored one with a
    /// newer repeat (keeping acknowledgement and escalation), or leaves it
    /// alone for a repeat with the same or an older sequence.
    public func upsert(_ alert: CallCentreAlert, receivedAtMs: Int64) async throws(StoreError) -> AlertUpsert {
        // One alert in, one outcome out.
        try await upsert([alert], receivedAtMs: receivedAtMs)[0]
    }
}
