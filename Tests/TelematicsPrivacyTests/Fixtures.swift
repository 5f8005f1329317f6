@preconcurrency import Crypto
import Foundation
import TelematicsPipeline
import TelematicsPrivacy
import TelematicsStores
import TelematicsTestSupport
import TelematicsWire

let hourMs: Int64 = 3_600_000
let dayMs: Int64 = 86_400_000
/// A minute boundary (2025-11-24T00:00Z), the fixtures' "now" before any clock moves.
let t0: Int64 = 1_763_942_400_000

/// A settable clock for the jobs under test.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var ms: Int64
    init(_ ms: Int64) { self.ms = ms }
    func set(_ value: Int64) { lock.withLock { ms = value } }
    var closure: @Sendable () -> Int64 { { [self] in lock.withLock { ms } } }
}

func testVIN(_ n: Int) -> VIN {
    let digits = String(n)
    return VIN("WMW22PR0X03B" + String(repeating: "0", count: 5 - digits.count) + digits)!
}

/// Fixed keys: a pseudonym key and charging keys k1 (current) and k2.
func testSecrets(current: String = "k1") -> PipelineSecrets {
    let k1 = SymmetricKey(data: [UInt8](repeating: 1, count: 32))
    let k2 = SymmetricKey(data: [UInt8](repeating: 2, count: 32))
    return PipelineSecrets(
        pseudonymKey: SymmetricKey(data: [UInt8](repeating: 7, count: 32)), sealingKeyID: current, sealingKeys: ["k1": k1, "k2": k2])
}

func teleserviceCall(_ v: VIN, _ sequence: UInt64, at: Int64, items: [ServiceItem] = []) -> TeleserviceCallRecord {
    TeleserviceCallRecord(
        vin: v, sequence: sequence, recordedAtMs: at, trigger: Trigger.stateChange.rawValue, mileageKm: 20_000 + UInt32(sequence),
        battery12vMv: 12_500, position: Position(latE7: 556_761_000, lonE7: 125_683_000), servicePartnerID: "DK-1075",
        serviceItems: items)
}

func oil(_ status: ServiceStatus) -> ServiceItem {
    ServiceItem(type: .engineOil, status: status, dueInDays: 30, dueInKm: 1500)
}

/// A session ended at `endedAt`, stored as the pipeline stores it: under
/// its keyed reference, the id and the position sealed with `secrets`'
/// current key.
func chargeSession(_ v: VIN, _ id: String, endedAt: Int64, secrets: PipelineSecrets, position: Position? = Position(latE7: 556_000_001, lonE7: 125_000_002)) throws -> ChargeSessionRecord {
    let sealer = PositionSealer(keyID: secrets.sealingKeyID, keys: secrets.sealingKeys)
    let reference = SessionReferences(pseudonymKey: secrets.pseudonymKey).reference(vin: v, sessionID: id)
    return ChargeSessionRecord(
        vin: v, sessionID: reference, sequence: 1, recordedAtMs: endedAt, startedAtMs: endedAt - hourMs, endedAtMs: endedAt,
        socStartPermille: 200, socEndPermille: 800, energyWh: 30_000, maxPowerW: 11_000,
        current: ChargingCurrent.ac.rawValue, site: ChargingSite.home.rawValue, endReason: 1,
        sealedPosition: try position.map { try sealer.seal($0, vin: v, sessionID: reference) }, keyID: secrets.sealingKeyID,
        sealedSessionID: try sealer.sealSessionID(id, vin: v, reference: reference))
}

/// `count` points of one probe of `v` at `at`, under its pseudonym of that day.
func probe(_ v: VIN, sequence: UInt64, at: Int64, count: Int = 5, secrets: PipelineSecrets) -> [ProbePoint] {
    let pseudonym = Pseudonymizer(key: secrets.pseudonymKey).pseudonym(of: v, atMs: at)
    return (0..<count).map {
        ProbePoint(
            pseudonym: pseudonym, sequence: sequence, pointIndex: $0, tMs: at + Int64($0) * 1000,
            latE7: 556_761_000 + Int32($0), lonE7: 125_683_000, speedDkmh: 500, headingDeg: 90, tile: 4242)
    }
}

func hvAlert(_ v: VIN, event: String, at: Int64) -> CallCentreAlert {
    CallCentreAlert(priority: "P0", type: "hv_warn_call", vin: v.description, sequence: 1, recordedAtMs: at, eventID: event)
}

/// Runs `body` with fresh stores of `kind`, removing them afterwards.
func withStores(_ kind: StoreKind, _ body: (any TelematicsStore, any AlertStore) async throws -> Void) async throws {
    let (store, alerts, remove) = try await kind.makeStores()
    do {
        try await body(store, alerts)
    } catch {
        await remove()
        throw error
    }
    await remove()
}

/// The JSON a privacy operation wrote, as Foundation objects.
func parse(_ json: JSON) throws -> [String: Any] {
    try parse(json.text)
}

func parse(_ text: String) throws -> [String: Any] {
    guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any] else {
        throw CocoaError(.propertyListReadCorrupt)
    }
    return object
}

/// Runs a tool (on PATH) to completion; its standard output, or an error when it fails.
func tool(_ arguments: [String]) throws -> String {
    let (status, output) = try ProcessOutput.run(arguments)
    guard status == 0 else { throw CocoaError(.executableLoad) }
    return output
}

/// `sqlite3 -bail FILE SQL`: its output.
func sqlite3(_ file: String, _ sql: String) throws -> String { try tool(["sqlite3", "-bail", file, sql]) }
