import TelematicsStores
import TelematicsWire

/// The consent state of every vehicle seen, as the pipeline applies it:
/// the latest state per VIN (by recorded time, then sequence) wins and
/// governs every message processed after it; a vehicle that has sent none
/// has WIRE.md's defaults.
///
/// Kept in memory and warmed from the store for vehicles it does not know
/// yet, so routing a record never waits on a query.
struct ConsentBook {
    private var states: [VIN: StoredConsent] = [:]

    /// The state that applies to `vin` now.
    func state(of vin: VIN) -> ConsentState {
        states[vin]?.state ?? .defaults
    }

    /// Whether `vin`'s state is known here (else it must be loaded first).
    func knows(_ vin: VIN) -> Bool { states[vin] != nil }

    /// Takes states loaded from the store for vehicles not known yet.
    mutating func warm(_ loaded: [VIN: StoredConsent]) {
        for (vin, consent) in loaded where states[vin] == nil { states[vin] = consent }
    }

    /// Records that `vin` has no stored state (so defaults apply and it is not asked again).
    mutating func markDefault(_ vin: VIN) {
        if states[vin] == nil { states[vin] = StoredConsent(state: .defaults, recordedAtMs: Int64.min, sequence: 0) }
    }

    /// Applies a consent message; returns false when an equal or newer state
    /// is already known (a stale or repeated message changes nothing).
    @discardableResult
    mutating func apply(_ change: ConsentChange) -> Bool {
        if let current = states[change.vin],
           (current.recordedAtMs, current.sequence) >= (change.recordedAtMs, change.sequence) {
            return false
        }
        states[change.vin] = StoredConsent(state: change.state, recordedAtMs: change.recordedAtMs, sequence: change.sequence)
        return true
    }

    /// Number of vehicles known.
    var count: Int { states.count }
}
