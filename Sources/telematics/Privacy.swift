import ArgumentParser
import CallCentre
import Foundation
import TelematicsPipeline
import TelematicsPrivacy
import TelematicsStores
import TelematicsWire

/// Where the pipeline's keys come from (`run`, `privacy`, `keys`).
struct KeyOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Directory of the keys that are not configured below (generated there on first use, owner-only).", valueName: "DIR"))
    var secrets = "data/secrets"

    @Option(name: .customLong("pseudonym-key-file"), help: ArgumentHelp("File of the RTTI pseudonym key (32 bytes) instead of the secrets directory's.", valueName: "FILE"))
    var pseudonymKeyFile: String?

    @Option(name: .customLong("charging-key"), help: ArgumentHelp("A key that seals charging positions, as ID=FILE (32 bytes; repeatable; old keys stay listed until `keys rotate` has re-sealed their rows). Without any, the secrets directory's charging-<ID>.key files.", valueName: "ID=FILE"))
    var chargingKeys: [String] = []

    @Option(name: .customLong("charging-key-id"), help: ArgumentHelp("The id of the key new charging positions are sealed with (default: the secrets directory's charging-active, or its only key).", valueName: "ID"))
    var chargingKeyID: String?

    /// The keys; a generated one is announced on standard error.
    func load() throws -> PipelineSecrets {
        do {
            return try PipelineSecrets.load(
                directory: secrets, pseudonymKeyFile: pseudonymKeyFile, chargingKeys: chargingKeys, activeKeyID: chargingKeyID
            ) { writeStandardError("telematics: \($0)\n") }
        } catch {
            throw queryFailure("keys: \(error)")
        }
    }
}

/// The retention periods (`run`, `retention run`, `privacy`).
struct RetentionOptions: ParsableArguments {
    @Option(name: .customLong("retention"), help: ArgumentHelp("A retention period as NAME=DURATION (repeatable): hv-alerts (default 183d), raw-probes (24h), traffic-aggregates (30d), personal-data (28d); units s, m, h, d, w.", valueName: "NAME=DURATION"))
    var settings: [String] = []

    func policy() throws -> RetentionPolicy {
        do {
            return try RetentionPolicy(settings: settings)
        } catch {
            throw ValidationError("\(error)")
        }
    }

    func validate() throws { _ = try policy() }
}

/// Both stores of a data directory or database: the pipeline's and the call centre's.
struct StoreSet {
    let store: any TelematicsStore
    let alerts: (any AlertStore)?

    /// Opens them (a missing SQLite alert file means no alerts yet: none is opened).
    static func open(_ options: QueryStoreOptions) async throws -> StoreSet {
        let store = try await options.open()
        do {
            if let postgres = options.postgres { return StoreSet(store: store, alerts: try await PostgresAlertStore(url: postgres)) }
            let file = (options.sqlite as NSString).appendingPathComponent(SQLiteAlertStore.fileName)
            guard FileManager.default.fileExists(atPath: file) else { return StoreSet(store: store, alerts: nil) }
            return StoreSet(store: store, alerts: try await SQLiteAlertStore(directory: options.sqlite))
        } catch {
            await store.close()
            throw queryFailure("\(error)")
        }
    }

    /// Runs `body` and closes both; a store error is a message and status 1.
    static func with<T>(_ options: QueryStoreOptions, _ body: (StoreSet) async throws -> T) async throws -> T {
        let set = try await open(options)
        return try await closing({ await set.close() }) { try await body(set) }
    }

    func close() async {
        await store.close()
        await alerts?.close()
    }
}

/// `telematics retention`: the retention job by hand.
struct Retention: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete data past its retention period (RULES.md), as `telematics run` does on a schedule.",
        subcommands: [RetentionRun.self])
}

struct RetentionRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "One retention pass over both stores; prints, per store and rule, what it deleted (JSON Lines).",
        discussion: """
            Deletes in batches of --batch rows, one short transaction each, so a running \
            pipeline keeps its pace. --dry-run deletes nothing and prints what would go.
            """)

    @OptionGroup var store: QueryStoreOptions
    @OptionGroup var retention: RetentionOptions

    @Flag(name: .customLong("dry-run"), help: "Count what would be deleted; delete nothing.")
    var dryRun = false

    @Option(help: "Rows per delete transaction.")
    var batch = 2_000

    func run() async throws {
        let policy = try retention.policy()
        let report = try await StoreSet.with(store) { set in
            var job = RetentionJob(store: set.store, alerts: set.alerts, policy: policy, now: { wallClockMs() })
            job.batchSize = max(1, batch)
            return try await job.run(dryRun: dryRun) { line in
                writeStandardError("retention: \(line.store) \(line.rule): \(line.rows) rows\n")
            }
        }
        writeStandardOutputLine(report.jsonLines.map(\.text).joined(separator: "\n"))
    }
}

/// `telematics privacy`: a data subject's export and erasure.
struct Privacy: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A vehicle's data: export everything stored about it, or erase it everywhere.",
        subcommands: [PrivacyExport.self, PrivacyErase.self])
}

/// What the privacy subcommands share: stores, keys, retention, the VIN.
struct PrivacyArguments: ParsableArguments {
    @OptionGroup var store: QueryStoreOptions
    @OptionGroup var keys: KeyOptions
    @OptionGroup var retention: RetentionOptions

    @Argument(help: "The vehicle identification number.")
    var vin: String

    func with(_ body: (DataRights, VIN) async throws -> JSON) async throws {
        let vin = try parseVIN(self.vin)
        let secrets = try keys.load()
        let policy = try retention.policy()
        let json = try await StoreSet.with(store) { set in
            try await body(DataRights(store: set.store, alerts: set.alerts, secrets: secrets, policy: policy, now: { wallClockMs() }), vin)
        }
        writeStandardOutputLine(json.text)
    }
}

struct PrivacyExport: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Everything stored about a vehicle, from every store, as one JSON document on standard output (data portability).",
        discussion: "Charging positions are opened with the configured keys; raw traffic probes are found under the vehicle's pseudonyms of the days they are kept.")

    @OptionGroup var arguments: PrivacyArguments

    func run() async throws {
        try await arguments.with { rights, vin in try await rights.export(vin) }
    }
}

struct PrivacyErase: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "erase",
        abstract: "Erase a vehicle's data in every store (one transaction per store); prints what was deleted and what is kept, and why.",
        discussion: "Kept: the vehicle's technical state (kept for the vehicle's life), its consent choices (so they keep applying), and HV alerts no agent has acknowledged yet. Erasing again is safe.")

    @OptionGroup var arguments: PrivacyArguments

    func run() async throws {
        try await arguments.with { rights, vin in try await rights.erase(vin) }
    }
}

/// `telematics keys`: the charging keys.
struct Keys: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Charging-position keys: make a new current key, re-seal stored positions with it.",
        subcommands: [KeysNew.self, KeysRotate.self])
}

struct KeysNew: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "new",
        abstract: "Generate a new charging key in the secrets directory and make it the current one.",
        discussion: "Restart the pipelines so they seal with it, then run `telematics keys rotate`. Keep the old key files until the rotation is done.")

    @Option(help: ArgumentHelp("The secrets directory.", valueName: "DIR"))
    var secrets = "data/secrets"

    func run() throws {
        let id = try PipelineSecrets.newChargingKey(in: secrets) { writeStandardError("telematics: \($0)\n") }
        writeStandardOutputLine(JSON.object([("current_key_id", .string(id))]).text)
    }
}

struct KeysRotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract: "Re-seal every stored charging position with the current key, in batches; prints the outcome as JSON.",
        discussion: "Safe beside a running pipeline and safe to repeat. Positions whose key is not configured are counted as unreadable and left as they are.")

    @OptionGroup var store: QueryStoreOptions
    @OptionGroup var keys: KeyOptions

    @Option(help: "Positions per batch (one transaction each).")
    var batch = 1_000

    func run() async throws {
        let secrets = try keys.load()
        let outcome = try await store.with { store in
            var rotation = KeyRotation(store: store, secrets: secrets)
            rotation.batchSize = max(1, batch)
            return try await rotation.run { writeStandardError("keys: \($0.resealed) positions re-sealed\r") }
        }
        writeStandardError("\n")
        writeStandardOutputLine(JSON.object([
            ("current_key_id", .string(secrets.sealingKeyID)), ("resealed", .int(outcome.resealed)),
            ("unreadable", .object(outcome.unreadable.sorted { $0.key < $1.key }.map { ($0.key, .int($0.value)) })),
        ]).text)
    }
}
