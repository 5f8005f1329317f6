@preconcurrency import Crypto
import Foundation
import TelematicsWire

/// Replaces a VIN by a pseudonym before any RTTI data is written or sent
/// (RULES.md: probes must not be tied to a person): HMAC-SHA256 of the VIN and
/// the UTC day of the message under a secret key, so the pseudonym rotates
/// daily and one vehicle cannot be followed across days, and nobody without
/// the key can recompute it from a VIN.
///
/// The day is the message's recorded day, not the day it is processed, so a
/// record redelivered after midnight gets the same pseudonym (idempotent).
public struct Pseudonymizer: Sendable {
    private let key: SymmetricKey

    /// A pseudonymizer with a 256-bit secret key.
    public init(key: SymmetricKey) { self.key = key }

    /// The pseudonym of `vin` on the UTC day of `timeMs`: 32 hex characters.
    public func pseudonym(of vin: VIN, atMs timeMs: Int64) -> String {
        pseudonym(of: vin, day: Self.day(ofMs: timeMs))
    }

    /// The UTC day number (days since 1970-01-01) of a time; floors before 1970.
    public static func day(ofMs timeMs: Int64) -> Int64 {
        timeMs >= 0 ? timeMs / 86_400_000 : (timeMs + 1) / 86_400_000 - 1
    }

    /// The pseudonym of `vin` on UTC day `day` (see ``day(ofMs:)``).
    public func pseudonym(of vin: VIN, day: Int64) -> String {
        var hmac = HMAC<SHA256>(key: key)
        vin.withBytes { hmac.update(data: $0) }
        withUnsafeBytes(of: day.littleEndian) { hmac.update(data: $0) }
        return hex32(hmac.finalize())
    }
}

/// The first 16 bytes of a MAC as 32 lowercase hex characters.
func hex32(_ mac: HashedAuthenticationCode<SHA256>) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(unsafeUninitializedCapacity: 32) { out in
        for (i, byte) in mac.prefix(16).enumerated() {
            out[2 * i] = digits[Int(byte >> 4)]
            out[2 * i + 1] = digits[Int(byte & 0x0f)]
        }
        return 32
    }
}

/// The charging-history store's key for a session: a keyed hash of the VIN
/// and the vehicle's session id (32 hex characters), so a session is stored
/// once per (VIN, session_id) without the id itself being stored in the
/// clear (RULES.md: charging data is stored encrypted; the id is sealed
/// beside it). The hash key is derived (HKDF) from the pseudonym key: a new
/// pseudonym key gives new references, and a session redelivered after
/// such a change would be stored again.
public struct SessionReferences: Sendable {
    private let key: SymmetricKey

    public init(pseudonymKey: SymmetricKey) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: pseudonymKey, info: Array("telematics charging session reference".utf8), outputByteCount: 32)
    }

    /// The reference of the vehicle's session `sessionID`.
    public func reference(vin: VIN, sessionID: String) -> String {
        var hmac = HMAC<SHA256>(key: key)
        vin.withBytes { hmac.update(data: $0) }
        hmac.update(data: [0])
        hmac.update(data: Array(sessionID.utf8))
        return hex32(hmac.finalize())
    }
}

/// The pseudonyms a router has computed lately, by (VIN, day): a vehicle
/// sends a probe every few seconds, so most lookups hit and skip the HMAC.
/// Bounded: emptied when it reaches ``capacity`` entries.
struct PseudonymCache {
    private struct Key: Hashable {
        var vin: VIN
        var day: Int64
    }
    private var entries: [Key: String] = [:]
    let pseudonymizer: Pseudonymizer
    /// Most entries kept (about 100 bytes each).
    let capacity: Int

    init(_ pseudonymizer: Pseudonymizer, capacity: Int = 100_000) {
        self.pseudonymizer = pseudonymizer
        self.capacity = capacity
    }

    /// ``Pseudonymizer/pseudonym(of:atMs:)``, from the cache when it can.
    mutating func pseudonym(of vin: VIN, atMs timeMs: Int64) -> String {
        let key = Key(vin: vin, day: Pseudonymizer.day(ofMs: timeMs))
        if let hit = entries[key] { return hit }
        if entries.count >= capacity { entries.removeAll(keepingCapacity: true) }
        let value = pseudonymizer.pseudonym(of: vin, day: key.day)
        entries[key] = value
        return value
    }
}

/// Encrypts a charging session's position for the charging-history store
/// (RULES.md: charging data is stored encrypted) with AES-GCM; each sealed
/// value names the key that sealed it, so keys can be rotated.
public struct PositionSealer: Sendable {
    /// The id of the key new values are sealed with.
    public let keyID: String
    private let keys: [String: SymmetricKey]

    /// A sealer with the current key `keyID` among `keys` (older keys stay to open old rows).
    public init(keyID: String, keys: [String: SymmetricKey]) {
        precondition(keys[keyID] != nil, "the current key must be among the keys")
        self.keyID = keyID
        self.keys = keys
    }

    /// The position sealed (nonce, ciphertext and tag in AES-GCM's combined
    /// form), bound to the vehicle and session so a value cannot be moved to another row.
    public func seal(_ position: Position, vin: VIN, sessionID: String) throws -> [UInt8] {
        var plain = [UInt8]()
        withUnsafeBytes(of: position.latE7.littleEndian) { plain += $0 }
        withUnsafeBytes(of: position.lonE7.littleEndian) { plain += $0 }
        return try seal(plain, authenticating: Self.context(vin, sessionID))
    }

    /// Opens a value sealed by ``seal(_:vin:sessionID:)`` with the key `keyID`.
    public func open(_ sealed: [UInt8], keyID: String, vin: VIN, sessionID: String) throws -> Position {
        let plain = try open(sealed, keyID: keyID, authenticating: Self.context(vin, sessionID))
        guard plain.count == 8 else { throw SealingError.malformed }
        let lat = plain.prefix(4).withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) }
        let lon = plain.suffix(4).withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) }
        return Position(latE7: lat, lonE7: lon)
    }

    private static func context(_ vin: VIN, _ sessionID: String) -> [UInt8] {
        Array(vin.description.utf8) + [0] + Array(sessionID.utf8)
    }

    /// The vehicle's session id sealed, bound to the row (VIN and the
    /// session's reference) and marked as an id, so it can be neither moved
    /// to another row nor passed off as a position.
    public func sealSessionID(_ sessionID: String, vin: VIN, reference: String) throws -> [UInt8] {
        try seal(Array(sessionID.utf8), authenticating: Self.idContext(vin, reference))
    }

    /// Opens a session id sealed by ``sealSessionID(_:vin:reference:)`` with the key `keyID`.
    public func openSessionID(_ sealed: [UInt8], keyID: String, vin: VIN, reference: String) throws -> String {
        String(decoding: try open(sealed, keyID: keyID, authenticating: Self.idContext(vin, reference)), as: UTF8.self)
    }

    /// `plain` sealed with the current key (nonce, ciphertext and tag in AES-GCM's combined form).
    private func seal(_ plain: [UInt8], authenticating context: [UInt8]) throws -> [UInt8] {
        Array(try AES.GCM.seal(plain, using: keys[keyID]!, authenticating: context).combined!)
    }

    /// What ``seal(_:authenticating:)`` sealed with the key `keyID`.
    private func open(_ sealed: [UInt8], keyID: String, authenticating context: [UInt8]) throws -> Data {
        guard let key = keys[keyID] else { throw SealingError.unknownKey(keyID) }
        return try AES.GCM.open(AES.GCM.SealedBox(combined: sealed), using: key, authenticating: context)
    }

    private static func idContext(_ vin: VIN, _ reference: String) -> [UInt8] {
        context(vin, reference) + Array("\u{0}session_id".utf8)
    }

    /// Why a sealed value could not be opened.
    public enum SealingError: Error, CustomStringConvertible {
        case unknownKey(String)
        case malformed
        public var description: String {
            switch self {
            case .unknownKey(let id): "no key with id \(id) is configured"
            case .malformed: "the sealed value is not a position"
            }
        }
    }
}
