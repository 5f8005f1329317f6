@preconcurrency import Crypto
import Foundation

/// The pipeline's secrets: the RTTI pseudonym key and the keys that seal
/// charging positions.
public struct PipelineSecrets: Sendable {
    public var pseudonymKey: SymmetricKey
    public var sealingKeyID: String
    public var sealingKeys: [String: SymmetricKey]

    public init(pseudonymKey: SymmetricKey, sealingKeyID: String, sealingKeys: [String: SymmetricKey]) {
        self.pseudonymKey = pseudonymKey
        self.sealingKeyID = sealingKeyID
        self.sealingKeys = sealingKeys
    }

    /// The keys of the configuration, the rest from `directory`:
    /// - the pseudonym key from `pseudonymKeyFile`, or `pseudonym.key` in
    ///   the directory (generated there on first use);
    /// - the sealing keys from `chargingKeys` (`ID=FILE` each), or every
    ///   `charging-<ID>.key` in the directory (`charging-k1.key` generated
    ///   on first use);
    /// - the current sealing key `activeKeyID`, or the id in the directory's
    ///   `charging-active` file (when the keys come from there), or the only
    ///   key, or `k1`.
    /// Generated keys get owner-only permissions and `announce` is told
    /// (the embedded default); production configures its own keys instead.
    public static func load(
        directory: String, pseudonymKeyFile: String? = nil, chargingKeys: [String] = [], activeKeyID: String? = nil,
        announce: (String) -> Void
    ) throws -> PipelineSecrets {
        let store = KeyDirectory(path: directory)
        let pseudonymKey: SymmetricKey
        if let pseudonymKeyFile {
            pseudonymKey = try KeyDirectory.read(pseudonymKeyFile)
        } else {
            pseudonymKey = try store.key("pseudonym.key", "the RTTI pseudonym key; keep it secret", announce)
        }
        var keys: [String: SymmetricKey] = [:]
        for setting in chargingKeys {
            let parts = setting.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
                throw SecretsError(path: setting, problem: "a charging key is given as ID=FILE")
            }
            keys[parts[0]] = try KeyDirectory.read(parts[1])
        }
        if chargingKeys.isEmpty {
            keys = try store.chargingKeys()
            if keys.isEmpty { keys["k1"] = try store.key("charging-k1.key", "seals charging positions; without it they cannot be read", announce) }
        }
        let active = activeKeyID ?? (chargingKeys.isEmpty ? store.activeChargingKeyID() : nil) ?? (keys.count == 1 ? keys.keys.first! : "k1")
        guard keys[active] != nil else {
            throw SecretsError(path: directory, problem: "the current charging key '\(active)' is not among the keys (\(keys.keys.sorted().joined(separator: ", ")))")
        }
        return PipelineSecrets(pseudonymKey: pseudonymKey, sealingKeyID: active, sealingKeys: keys)
    }

    /// Keys kept in `directory`, generated there on first use (see ``load(directory:pseudonymKeyFile:chargingKeys:activeKeyID:announce:)``).
    public static func loadOrCreate(in directory: String, announce: (String) -> Void) throws -> PipelineSecrets {
        try load(directory: directory, announce: announce)
    }

    /// Generates a new charging key `charging-<id>.key` in `directory` (the
    /// next free `kN`) and makes it the current one (`charging-active`).
    /// Running pipelines seal with it after their restart; `telematics keys
    /// rotate` re-seals the stored positions. Returns the new id.
    public static func newChargingKey(in directory: String, announce: (String) -> Void) throws -> String {
        let store = KeyDirectory(path: directory)
        let existing = try store.chargingKeys()
        var n = existing.count + 1
        while existing["k\(n)"] != nil { n += 1 }
        let id = "k\(n)"
        _ = try store.key("charging-\(id).key", "seals charging positions from now on", announce)
        try store.setActiveChargingKeyID(id)
        return id
    }
}

/// The directory of generated keys: 32-byte files, owner-only.
struct KeyDirectory {
    let path: String

    func file(_ name: String) -> String { (path as NSString).appendingPathComponent(name) }

    static func read(_ path: String) throws -> SymmetricKey {
        guard let data = FileManager.default.contents(atPath: path) else { throw SecretsError(path: path, problem: "cannot be read") }
        guard data.count == 32 else { throw SecretsError(path: path, problem: "holds \(data.count) bytes, expected a 32-byte key") }
        return SymmetricKey(data: data)
    }

    /// The key in `name`, generated there first if there is none.
    func key(_ name: String, _ purpose: String, _ announce: (String) -> Void) throws -> SymmetricKey {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        let keyPath = file(name)
        if FileManager.default.fileExists(atPath: keyPath) { return try Self.read(keyPath) }
        let fresh = SymmetricKey(size: .bits256)
        let bytes = fresh.withUnsafeBytes { Data($0) }
        guard FileManager.default.createFile(atPath: keyPath, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
            throw SecretsError(path: keyPath, problem: "cannot be written")
        }
        announce("generated a new key \(keyPath) (owner-only): \(purpose)")
        return fresh
    }

    /// Every `charging-<id>.key` of the directory, by id.
    func chargingKeys() throws -> [String: SymmetricKey] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        var keys: [String: SymmetricKey] = [:]
        for name in names where name.hasPrefix("charging-") && name.hasSuffix(".key") {
            let id = String(name.dropFirst("charging-".count).dropLast(".key".count))
            guard !id.isEmpty else { continue }
            keys[id] = try Self.read(file(name))
        }
        return keys
    }

    func activeChargingKeyID() -> String? {
        guard let data = FileManager.default.contents(atPath: file("charging-active")) else { return nil }
        let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return id.isEmpty ? nil : id
    }

    func setActiveChargingKeyID(_ id: String) throws {
        guard FileManager.default.createFile(atPath: file("charging-active"), contents: Data((id + "\n").utf8), attributes: [.posixPermissions: 0o600])
        else { throw SecretsError(path: file("charging-active"), problem: "cannot be written") }
    }
}

/// A secret that could not be read or made.
public struct SecretsError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}
