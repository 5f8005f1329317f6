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

    /// Keys kept in `directory`, generated there on first use with
    /// owner-only permissions (the embedded default, which says so on
    /// standard error). Production configures its own keys instead.
    public static func loadOrCreate(in directory: String, announce: (String) -> Void) throws -> PipelineSecrets {
        let dir = directory
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        func key(_ name: String, _ purpose: String) throws -> SymmetricKey {
            let path = (dir as NSString).appendingPathComponent(name)
            if let data = FileManager.default.contents(atPath: path) {
                guard data.count == 32 else { throw SecretsError(path: path, problem: "holds \(data.count) bytes, expected a 32-byte key") }
                return SymmetricKey(data: data)
            }
            let fresh = SymmetricKey(size: .bits256)
            let bytes = fresh.withUnsafeBytes { Data($0) }
            guard FileManager.default.createFile(atPath: path, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
                throw SecretsError(path: path, problem: "cannot be written")
            }
            announce("generated a new key \(path) (owner-only): \(purpose)")
            return fresh
        }
        return PipelineSecrets(
            pseudonymKey: try key("pseudonym.key", "the RTTI pseudonym key; keep it secret"),
            sealingKeyID: "k1",
            sealingKeys: ["k1": try key("charging-k1.key", "seals charging positions; without it they cannot be read")])
    }
}

/// A secret that could not be read or made.
public struct SecretsError: Error, CustomStringConvertible {
    public let path: String
    public let problem: String
    public var description: String { "\(path): \(problem)" }
}
