import TelematicsWire

/// (vin, sequence): what identifies a teleservice call.
struct CallKey: Hashable {
    var vin: VIN
    var sequence: UInt64
}

/// The primitive, batched writes a backend offers inside an open
/// transaction. ``applyBatch(_:with:)`` strings them together in the order
/// and with the rules of ``StoreBatch``, so the backends share the logic and
/// differ only in SQL. Every method is one or a few statements for the whole
/// list it is given, never one per record.
protocol BatchWriter: Sendable {
    /// Stored consent states of these vehicles.
    func storedConsents(_ vins: [VIN]) async throws -> [VIN: StoredConsent]
    /// Writes these states (one per VIN), each only where it is newer than the stored one.
    func upsertConsents(_ changes: [ConsentChange]) async throws
    /// Deletes the vehicles' charge sessions; returns how many.
    func deleteChargeSessions(_ vins: [VIN]) async throws -> Int
    /// Inserts the calls not stored yet; says which were inserted.
    func insertCalls(_ calls: [TeleserviceCallRecord]) async throws -> Insertion<CallKey>
    /// Writes each call's technical data (one call per VIN) where it is
    /// newer than the stored state; returns how many states changed.
    func upsertVehicleStates(_ calls: [TeleserviceCallRecord]) async throws -> Int
    /// The cases not closed of these vehicles.
    func openCases(_ vins: [VIN]) async throws -> [MaintenanceCase]
    /// Writes the final state of these stored cases (all have an id).
    func updateCases(_ cases: [MaintenanceCase]) async throws
    /// Inserts these new cases (none has an id).
    func insertCases(_ cases: [MaintenanceCase]) async throws
    /// Inserts the sessions not stored yet; returns how many were inserted.
    func insertChargeSessions(_ sessions: [ChargeSessionRecord]) async throws -> Int
    /// Inserts the probes not stored yet (a row each); says which were inserted.
    func insertProbes(_ probes: [PackedProbe], bytes: [UInt8]) async throws -> Insertion<ProbeKey>
    /// Adds these sums, speed histograms included, to the aggregates (one
    /// entry per key); a vehicle counts only if the row's vehicle set lacks it.
    func addToAggregates(_ sums: [(TrafficDelta.Key, TrafficDelta.Sums)]) async throws
    /// Adds these deltas to the named counters (one entry per name), creating them at 0.
    func addToCounters(_ deltas: [(String, Int)]) async throws
}

/// Which of the rows given an insert stored. Usually all of them: only a
/// redelivered batch meets rows already stored, so a writer says `.all`
/// without returning a key per row when it can.
enum Insertion<Key: Hashable> {
    /// Every row given (none was stored before, none repeated).
    case all
    /// Only the rows of these keys.
    case only(Set<Key>)
}

/// Which consent changes of a batch take effect: the pure part of the
/// consent rule, shared by the backends.
struct ConsentPlan {
    /// The state each changed vehicle ends with (one per VIN, in first-seen order).
    var finalStates: [ConsentChange] = []
    /// Vehicles for which an applied change took the charging history away.
    var deleteSessionsOf: [VIN] = []
    /// Changes newer than what was stored (or than an earlier change of the batch).
    var applied = 0
    /// Changes not newer, so ignored.
    var ignored = 0

    /// Walks the changes in order against the stored states: the latest
    /// (recordedAtMs, sequence) wins. Every applied change that switches the
    /// charging history off or deletes the account deletes the sessions, even
    /// if a later change of the same batch switches it on again.
    init(stored: [VIN: StoredConsent], changes: [ConsentChange]) {
        var current: [VIN: (Int64, UInt64)] = stored.mapValues { ($0.recordedAtMs, $0.sequence) }
        var finalIndex: [VIN: Int] = [:]
        var deleting: Set<VIN> = []
        for change in changes {
            if let now = current[change.vin], !((change.recordedAtMs, change.sequence) > now) {
                ignored += 1
                continue
            }
            applied += 1
            current[change.vin] = (change.recordedAtMs, change.sequence)
            if let i = finalIndex[change.vin] {
                finalStates[i] = change
            } else {
                finalIndex[change.vin] = finalStates.count
                finalStates.append(change)
            }
            if change.deletesChargeSessions, deleting.insert(change.vin).inserted {
                deleteSessionsOf.append(change.vin)
            }
        }
    }
}

/// Applies `batch` through `writer`, which must be inside an open
/// transaction; the caller commits or rolls back.
func applyBatch(_ batch: StoreBatch, with writer: some BatchWriter) async throws -> StoreBatchResult {
    var result = StoreBatchResult()

    // 1. Consent, first, so that deletions precede this batch's sessions.
    if !batch.consentChanges.isEmpty {
        let vins = uniqued(batch.consentChanges.map(\.vin))
        let plan = ConsentPlan(stored: try await writer.storedConsents(vins), changes: batch.consentChanges)
        result.consentsApplied = plan.applied
        result.consentsIgnored = plan.ignored
        if !plan.finalStates.isEmpty { try await writer.upsertConsents(plan.finalStates) }
        if !plan.deleteSessionsOf.isEmpty {
            result.sessionsDeletedByConsent = try await writer.deleteChargeSessions(plan.deleteSessionsOf)
        }
    }

    // 2. Teleservice calls: only newly stored ones change state and cases,
    // so a redelivered call re-applies nothing.
    if !batch.teleserviceCalls.isEmpty {
        var newCalls = batch.teleserviceCalls
        if case .only(var inserted) = try await writer.insertCalls(batch.teleserviceCalls) {
            newCalls = []
            for call in batch.teleserviceCalls where inserted.remove(CallKey(vin: call.vin, sequence: call.sequence)) != nil {
                newCalls.append(call)  // `remove` keeps a call repeated within the batch from counting twice
            }
        }
        result.callsInserted = newCalls.count
        result.callsAlreadyPresent = batch.teleserviceCalls.count - newCalls.count

        if !newCalls.isEmpty {
            var newest: [VIN: TeleserviceCallRecord] = [:]
            for call in newCalls {
                if let n = newest[call.vin], !((call.recordedAtMs, call.sequence) > (n.recordedAtMs, n.sequence)) { continue }
                newest[call.vin] = call
            }
            result.vehicleStatesUpdated = try await writer.upsertVehicleStates(Array(newest.values))

            var book = CaseBook(openCases: try await writer.openCases(uniqued(newCalls.map(\.vin))))
            for call in newCalls { book.process(call) }
            // Updates first: a case closed and re-opened in one batch must be
            // closed before the new one meets the one-open-case index.
            let updates = book.updates
            if !updates.isEmpty { try await writer.updateCases(updates) }
            let inserts = book.inserts
            if !inserts.isEmpty { try await writer.insertCases(inserts) }
            result.casesOpened = book.opened
            result.casesUpdated = book.renotified
            result.casesClosed = book.closed
        }
    }

    // 3. Charge sessions, once per (vin, session_id).
    if !batch.chargeSessions.isEmpty {
        result.sessionsInserted = try await writer.insertChargeSessions(batch.chargeSessions)
        result.sessionsAlreadyPresent = batch.chargeSessions.count - result.sessionsInserted
    }

    // 4. Probes, a row each; only the points of newly stored ones reach
    // the aggregates (a probe is stored whole or not at all).
    if let (rows, prepared) = batch.probeRows() {
        var traffic = prepared
        result.probePointsInserted = rows.probes.reduce(0) { $0 + $1.pointCount }
        if case .only(var inserted) = try await writer.insertProbes(rows.probes, bytes: rows.bytes), inserted.count < rows.probes.count {
            // After a redelivery only the new probes' points count: they are
            // packed again, and so reduced, as the router packs them.
            var fresh = ProbeRows()
            for probe in rows.probes where inserted.remove(probe.key) != nil {
                fresh.append(points: ProbePacking.unpack(
                    rows.blob(of: probe), format: 2, pseudonym: probe.key.pseudonym, sequence: probe.key.sequence) ?? [])
            }
            result.probePointsInserted = fresh.pointCount
            traffic = fresh.sortedTraffic()
        }
        result.probePointsAlreadyPresent = rows.pointCount - result.probePointsInserted
        if result.probePointsInserted > 0 {
            try await writer.addToAggregates(traffic.sums)
        }
    }

    // 5. Counters: the pipeline's deltas plus what only this apply knows
    // (stored, duplicates, cases, deletions), in this transaction so that
    // they roll back with a failed batch. Last, because every instance on
    // one PostgreSQL updates the same few rows: their locks are then held
    // only until the commit. Sorted names: a fixed lock order, no deadlock.
    var counters = batch.counters
    counters.merge(result.counters, uniquingKeysWith: +)
    let deltas = counters.filter { $0.value != 0 }.sorted { $0.key < $1.key }
    if !deltas.isEmpty { try await writer.addToCounters(deltas) }
    return result
}

/// The distinct elements of `values` in first-seen order.
func uniqued<T: Hashable>(_ values: [T]) -> [T] {
    var seen: Set<T> = []
    return values.filter { seen.insert($0).inserted }
}


/// Runs a store transaction in a task the caller's cancellation does not
/// reach: once begun, a transaction must run to COMMIT or ROLLBACK, and a
/// cancelled query would skip the ROLLBACK and leave the connection inside an
/// open transaction (every later batch would then fail).
func runToCompletion<T: Sendable>(_ transaction: @escaping @Sendable () async throws(StoreError) -> T) async throws(StoreError) -> T {
    let outcome = await Task { () async -> Result<T, StoreError> in
        do throws(StoreError) { return .success(try await transaction()) } catch { return .failure(error) }
    }.value
    return try outcome.get()
}

extension TransactionGate {
    /// Runs a store transaction alone on its connection (no other
    /// transaction of this gate begins before it ends) and to completion
    /// (``runToCompletion(_:)``). A store actor shares one connection among
    /// its methods and is reentrant: a retention sweep or an erase beginning
    /// while a batch's transaction awaits its statements would fail its own
    /// BEGIN and roll back the batch's work, which then went on in autocommit.
    func exclusively<T: Sendable>(urgent: Bool = false, _ transaction: @escaping @Sendable () async throws(StoreError) -> T) async throws(StoreError) -> T {
        await enter(urgent: urgent)
        defer { leave() }
        return try await runToCompletion(transaction)
    }
}
