import TelematicsStores
import TelematicsWire

/// The consent state of the vehicles seen lately, as the pipeline applies
/// it: the latest state per VIN (by recorded time, then sequence) wins and
/// governs every message processed after it; a vehicle that has sent none
/// has WIRE.md's defaults.
///
/// Kept in memory and warmed from the store for vehicles it does not know
/// yet, so routing a record never waits on a query.
///
/// Bounded: about ``capacity`` vehicles, in two generations. Vehicles
/// routed lately are in the young one; when it holds half the capacity, it
/// becomes the old one and the old one before it is forgotten. A vehicle
/// found in the old generation moves back to the young. A vehicle is
/// forgotten only once every batch routed before it was last used is
/// durable (``beginBatch(_:durableBatches:revocations:)``): its stored
/// state is then the one it had here, and the store gives it back when it
/// comes again.
///
/// After a rebalance took partitions away, another instance may have
/// changed the consent of their vehicles, and the partitions may come back:
/// every state the store already has is then forgotten, to be loaded again,
/// and those of batches not yet durable once they are.
struct ConsentBook {
    private struct Entry {
        var consent: StoredConsent
        /// The batch whose consent message set it; -1 when it came from the store.
        var changedIn: Int
    }

    private var young: [VIN: Entry] = [:]
    private var old: [VIN: Entry] = [:]
    /// The batch at whose start ``old`` was made: its vehicles were last
    /// used in batches before it.
    private var oldMadeAt = 0
    /// Revocations seen so far.
    private var revocations = 0
    /// The batch at whose start a revocation was seen, while states changed
    /// before it are not all durable yet (they are forgotten when they are).
    private var forgetChangedBefore: Int?
    /// Vehicles kept, about (more while the store is behind).
    let capacity: Int

    /// A book of about `capacity` vehicles (at least 2).
    init(capacity: Int = 1_000_000) {
        self.capacity = max(2, capacity)
    }

    /// Called before each batch is looked at (before ``knows(_:)``):
    /// `batch` counts the batches routed before it, `durableBatches` those of
    /// them that are durable (they become durable in order), `revocations`
    /// the rebalances that took partitions away so far. Forgets what a
    /// revocation makes doubtful, and turns the generations when the young
    /// one is full and the old one may go.
    mutating func beginBatch(_ batch: Int, durableBatches: Int, revocations: Int = 0) {
        if revocations != self.revocations {
            self.revocations = revocations
            forgetChangedBefore = batch
            forgetStored(changedBefore: durableBatches)
        }
        if let before = forgetChangedBefore, durableBatches >= before {
            forgetStored(changedBefore: before)
            forgetChangedBefore = nil
        }
        guard young.count >= capacity / 2, durableBatches >= oldMadeAt else { return }
        old = young
        young = [:]
        oldMadeAt = batch
    }

    /// Forgets the states loaded from the store and those set in batches
    /// before `batch` (all durable).
    private mutating func forgetStored(changedBefore batch: Int) {
        young = young.filter { $0.value.changedIn >= batch }
        old = old.filter { $0.value.changedIn >= batch }
    }

    /// The state that applies to `vin` now.
    mutating func state(of vin: VIN) -> ConsentState {
        if let known = young[vin] { return known.consent.state }
        guard let known = old.removeValue(forKey: vin) else { return .defaults }
        young[vin] = known
        return known.consent.state
    }

    /// Whether `vin`'s state is known here (else it must be loaded first).
    func knows(_ vin: VIN) -> Bool { young[vin] != nil || old[vin] != nil }

    /// Takes states loaded from the store for vehicles not known yet.
    mutating func warm(_ loaded: [VIN: StoredConsent]) {
        for (vin, consent) in loaded where !knows(vin) { young[vin] = Entry(consent: consent, changedIn: -1) }
    }

    /// Records that `vin` has no stored state (so defaults apply and it is not asked again).
    mutating func markDefault(_ vin: VIN) {
        if !knows(vin) {
            young[vin] = Entry(consent: StoredConsent(state: .defaults, recordedAtMs: Int64.min, sequence: 0), changedIn: -1)
        }
    }

    /// Applies a consent message of batch `batch`; returns false when an
    /// equal or newer state is already known (a stale or repeated message
    /// changes nothing).
    @discardableResult
    mutating func apply(_ change: ConsentChange, inBatch batch: Int) -> Bool {
        let current = young[change.vin] ?? old.removeValue(forKey: change.vin)
        if let current, (current.consent.recordedAtMs, current.consent.sequence) >= (change.recordedAtMs, change.sequence) {
            young[change.vin] = current
            return false
        }
        young[change.vin] = Entry(
            consent: StoredConsent(state: change.state, recordedAtMs: change.recordedAtMs, sequence: change.sequence), changedIn: batch)
        return true
    }

    /// Number of vehicles known.
    var count: Int { young.count + old.count }
}
