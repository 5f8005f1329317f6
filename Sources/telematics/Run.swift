import ArgumentParser
import CallCentre
import FleetSimulator
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import TelematicsKafka
import TelematicsPipeline
import TelematicsPrivacy
import TelematicsStores
import TelematicsWire

/// `telematics run`: the pipeline.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the ingestion pipeline: Kafka in; maintenance, charging-history and traffic stores, call-centre alerts and traffic probes out.",
        discussion: """
            Without --brokers, runs the embedded default: a Kafka-protocol cluster on \
            loopback (librdkafka's mock cluster) with the WIRE.md topics, a simulated \
            fleet producing into it, and the pipeline storing into SQLite under \
            --sqlite (./data). With --brokers, consumes a real cluster (Apache Kafka, \
            Redpanda, a managed service) and nothing is simulated unless --simulate-rate \
            is given. --postgres URL stores into PostgreSQL instead of SQLite.
            A record's offset is committed only after its store transaction, its \
            alerts and probes, or its dead letter are durable. SIGINT or SIGTERM \
            drains the batches in flight, commits and exits 0.
            HV warn calls have their own emergency lane (consumer group <group>.emergency, \
            own producer, own alert store) and reach the call-centre console \
            (--console) at once, whatever the bulk load.
            """
    )

    @Option(help: ArgumentHelp("A YAML settings file: `name: value` lines naming these options (TELEMATICS_CONFIG also names one; `telematics config check FILE` validates one). Environment variables TELEMATICS_<OPTION> set options too; the command line wins, then the environment, then the file.", valueName: "FILE"))
    var config: String?

    @Flag(name: .customLong("show-settings"), help: "Print the settings in effect (after file, environment and command line) and exit.")
    var showSettings = false

    @OptionGroup var kafka: KafkaConnectionOptions

    @Option(help: "Consumer group of the pipeline instances.")
    var group = "telematics"

    @Option(help: ArgumentHelp("Store into SQLite files in this directory (the default).", valueName: "DIR"))
    var sqlite = "data"

    @Option(help: ArgumentHelp("Store into PostgreSQL at this URL instead of SQLite.", valueName: "postgres://USER:PASSWORD@HOST:PORT/DB"))
    var postgres: String?

    @OptionGroup var keys: KeyOptions

    @OptionGroup var retention: RetentionOptions

    @Option(name: .customLong("retention-every"), help: ArgumentHelp("How often the retention job runs inside the pipeline (first pass 5 minutes after start; 'off' to leave it to `telematics retention run`).", valueName: "DURATION"))
    var retentionEvery = "1h"

    @Option(name: .customLong("exit-when-idle"), help: ArgumentHelp("Stop after this many seconds without new records, everything committed (batch runs, tests).", valueName: "SECONDS"))
    var exitWhenIdle: Double?

    @Option(name: .customLong("dict-dir"), help: ArgumentHelp("Directory of zstd dictionaries (*.dict) the vehicles compress with.", valueName: "DIR"))
    var dictionaryDirectory: String?

    @Option(name: .customLong("batch-size"), help: "Most records per poll and per store transaction (a poll returns after 100 ms with what has arrived).")
    var batchSize = 10_000

    @Option(name: .customLong("routing-threads"), help: ArgumentHelp(
        "Threads that decode and route a batch, each for its share of the vehicles (default: the cores less one, at most 8).",
        valueName: "N"))
    var routingThreads: Int?

    @Option(name: .customLong("consent-cache"), help: ArgumentHelp(
        "Vehicles whose consent state is kept in memory (about 100 bytes each); others are loaded from the store when they come again.",
        valueName: "N"))
    var consentCache = 1_000_000

    @Option(help: "Partitions per topic of the embedded cluster.")
    var partitions = 12

    @Option(name: .customLong("simulate-rate"), help: ArgumentHelp("Records/s of the built-in fleet simulator (default 2000 on the embedded cluster, off otherwise; 0 turns it off).", valueName: "R"))
    var simulateRate: Double?

    @Option(name: .customLong("simulate-vehicles"), help: "Vehicles of the built-in simulator.")
    var simulateVehicles = 1_000

    @Option(help: ArgumentHelp("Stop after this many seconds (default: run until SIGINT/SIGTERM).", valueName: "S"))
    var duration: Double?

    @Option(help: ArgumentHelp("Address of the call-centre console and /metrics, or 'off'.", valueName: "HOST:PORT"))
    var console = "127.0.0.1:8080"

    @Option(name: .customLong("agent"), help: ArgumentHelp("A call-centre agent who may acknowledge alerts, as name:token (repeatable). Without any, an agent 'agent' gets a token generated into the secrets directory.", valueName: "NAME:TOKEN"))
    var agents: [String] = []

    @Option(name: .customLong("privacy-officer"), help: ArgumentHelp("Who may export or erase a vehicle's data through the console's API, as name:token (repeatable). Without any, an officer 'privacy' gets a token generated into the secrets directory.", valueName: "NAME:TOKEN"))
    var privacyOfficers: [String] = []

    @Option(name: .customLong("escalate-after"), help: ArgumentHelp("Seconds an alert may stay unacknowledged before it is escalated.", valueName: "SECONDS"))
    var escalateAfter: Double = 60

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    /// Every setting in effect, by option name (``RunSettings/options``), secrets masked.
    var settings: [(String, String)] {
        func masked(_ name: String, _ values: [String]) -> String { values.map { RunSettings.masked(name, $0) }.joined(separator: ";") }
        return [
            ("brokers", kafka.brokers ?? ""),
            ("kafka-property", masked("kafka-property", kafka.kafkaProperties)),
            ("compression", kafka.compression.rawValue), ("group", group), ("sqlite", sqlite),
            ("postgres", masked("postgres", postgres.map { [$0] } ?? [])), ("secrets", keys.secrets),
            ("pseudonym-key-file", keys.pseudonymKeyFile ?? ""),
            ("charging-key", keys.chargingKeys.joined(separator: ";")),
            ("charging-key-id", keys.chargingKeyID ?? ""), ("retention", retention.settings.joined(separator: ";")),
            ("retention-every", retentionEvery),
            ("privacy-officer", masked("privacy-officer", privacyOfficers)),
            ("exit-when-idle", exitWhenIdle.map { "\($0)" } ?? ""), ("dict-dir", dictionaryDirectory ?? ""),
            ("batch-size", "\(batchSize)"), ("routing-threads", "\(routingThreads ?? PipelineConfiguration.defaultRoutingThreads)"),
            ("consent-cache", "\(consentCache)"),
            ("partitions", "\(partitions)"),
            ("simulate-rate", simulateRate.map { "\($0)" } ?? ""), ("simulate-vehicles", "\(simulateVehicles)"),
            ("duration", duration.map { "\($0)" } ?? ""), ("console", console),
            ("agent", masked("agent", agents)),
            ("escalate-after", "\(escalateAfter)"), ("log-level", logLevel),
        ]
    }

    func run() async throws {
        if showSettings {
            for (name, value) in settings { print("\(name) = \(value)") }
            return
        }
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "telematics.run")
        let registry = PrometheusCollectorRegistry()
        var metricsFactory = PrometheusMetricsFactory(registry: registry)
        metricsFactory.defaultDurationHistogramBuckets = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000].map { Duration.milliseconds($0) }
        MetricsSystem.bootstrap(metricsFactory)

        let dictionaries = try dictionaryDirectory.map { try ZstdDictionaries(directory: $0) } ?? .none
        let secrets = try keys.load()
        let policy = try retention.policy()

        // Kafka: the given cluster, or an embedded one with the WIRE.md topics.
        var embedded: EmbeddedKafkaCluster?
        let topics = PipelineTopics()
        let bootstrap: KafkaBootstrap
        if let brokers = kafka.brokers {
            bootstrap = KafkaBootstrap(brokers)
        } else {
            let cluster = try EmbeddedKafkaCluster(brokers: 3)
            for topic in topics.all { try cluster.createTopic(topic, partitions: partitions) }
            embedded = cluster
            bootstrap = cluster.bootstrap
            logger.notice("embedded Kafka cluster (librdkafka mock) at \(bootstrap)")
        }
        var producer = try kafka.producerConfiguration(clientID: "telematics-pipeline", bootstrap: bootstrap)
        producer.compression = .zstd
        var consumer = KafkaConsumerConfiguration(bootstrap: bootstrap, groupID: group)
        consumer.clientID = "telematics-pipeline"
        consumer.batchSize = batchSize
        consumer.properties.merge(producer.properties) { _, new in new }
        var configuration = PipelineConfiguration(consumer: consumer, producer: producer)
        configuration.topics = topics
        configuration.batchSize = batchSize
        if let routingThreads { configuration.routingThreads = max(1, routingThreads) }
        configuration.consentCacheVehicles = max(1, consentCache)

        let store: any TelematicsStore
        if let postgres {
            store = try await PostgresStore(url: postgres)
            logger.notice("stores: PostgreSQL")
        } else {
            store = try await SQLiteStore(directory: sqlite)
            logger.notice("stores: SQLite in \(sqlite)")
        }

        // The emergency lane and the call centre: an alert store of their own.
        let alertStore: any AlertStore = if let postgres {
            try await PostgresAlertStore(url: postgres)
        } else {
            try await SQLiteAlertStore(directory: sqlite)
        }
        var emergencyConsumer = consumer
        emergencyConsumer.groupID = group + ".emergency"
        emergencyConsumer.clientID = "telematics-emergency"
        emergencyConsumer.batchSize = 64
        var emergencyConfiguration = EmergencyLaneConfiguration(consumer: emergencyConsumer, producer: producer)
        emergencyConfiguration.topics = topics
        let laneBox = LaneBox()
        let desk = AlertDesk(
            store: alertStore, escalateAfterMs: Int64(escalateAfter * 1000), clock: { wallClockMs() },
            publish: { record in
                var alert = record.alert
                alert.escalated = true
                try await laneBox.lane?.republish(alert)
            })
        let emergency = try EmergencyLane(configuration: emergencyConfiguration, dictionaries: dictionaries) { alerts in
            try await desk.receive(alerts).map(\.isNew)
        }
        laneBox.lane = emergency

        let statistics = PipelineStatistics()
        var services: [any Service] = [
            emergency,
            BulkLane(configuration: configuration, store: store, dictionaries: dictionaries, secrets: secrets, statistics: statistics, emergency: emergency),
            // Alerts past retention go with the retention job below.
            EscalationService(desk: desk, purgeEvery: nil),
            RunDisplay(
                statistics: statistics, emergency: emergency.statistics, duration: duration, exitWhenIdle: exitWhenIdle,
                // The mock cluster keeps about 25,000 records per partition and
                // drops older ones; warn well before a partition gets there.
                lagWarning: embedded == nil ? nil : Int64(partitions) * 15_000),
        ]
        if console != "off" {
            var consoleConfiguration = ConsoleConfiguration()
            try consoleConfiguration.setAddress(console)
            consoleConfiguration.agents = try agents.isEmpty
                ? ConsoleConfiguration.agents(fromPairs: ["agent:" + Self.generatedToken(in: keys.secrets, file: Self.agentTokenFile)])
                : ConsoleConfiguration.agents(fromPairs: agents)
            consoleConfiguration.privacyOfficers = try privacyOfficers.isEmpty
                ? ConsoleConfiguration.agents(fromPairs: ["privacy:" + Self.generatedToken(in: keys.secrets, file: Self.privacyTokenFile)])
                : ConsoleConfiguration.agents(fromPairs: privacyOfficers)
            let host = consoleConfiguration.host
            let announce = agents.isEmpty
                ? " (agent 'agent', token in \((keys.secrets as NSString).appendingPathComponent(Self.agentTokenFile)))" : ""
            var server = ConsoleServer(
                desk: desk, configuration: consoleConfiguration, registry: registry,
                ready: { statistics.snapshot.assignedPartitions > 0 },
                onRunning: { port in logger.notice("call-centre console: http://\(host):\(port)/\(announce); metrics at /metrics") })
            server.privacy = DataRights(store: store, alerts: alertStore, secrets: secrets, policy: policy, now: { wallClockMs() })
            services.append(server)
        }
        if let every = try retentionInterval() {
            let job = RetentionJob(store: store, alerts: alertStore, policy: policy, now: { wallClockMs() })
            services.append(RetentionService(job: job, firstAfter: min(.seconds(300), every), interval: every))
            logger.notice("retention: \(policy.description), every \(retentionEvery)")
        }
        let rate = simulateRate ?? (embedded != nil ? 2_000 : 0)
        if rate > 0 {
            var fleetConfiguration = FleetSimulator.Configuration(vehicles: simulateVehicles, ratePerSecond: rate)
            fleetConfiguration.startMs = wallClockMs()
            let dictionary = try dictionaryDirectory.flatMap { try Simulate.firstDictionary(in: $0)?.bytes }
            services.append(SimulatorService(fleet: fleetConfiguration, dictionary: dictionary, rate: rate, producer: producer))
            logger.notice("simulating \(simulateVehicles) vehicles at \(Int(rate)) records/s")
        }

        let group = ServiceGroup(configuration: .init(
            services: services.map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup) },
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        await store.close()
        await alertStore.close()
        withExtendedLifetime(embedded) {}
        let s = statistics.snapshot
        writeStandardError(RunDisplay.summary(s, emergency: emergency.statistics.snapshot) + "\n")
    }

    /// The file of the generated agent token, in the secrets directory.
    static let agentTokenFile = "console-agent-token"

    /// The file of the generated privacy officer's token, in the secrets directory.
    static let privacyTokenFile = "console-privacy-token"

    /// The retention job's interval; nil when it is off.
    func retentionInterval() throws -> Duration? {
        if retentionEvery == "off" { return nil }
        guard let ms = Duration.parseMs(retentionEvery), ms > 0 else {
            throw ValidationError("--retention-every '\(retentionEvery)': a positive duration with a unit (s, m, h, d, w) or 'off'")
        }
        return .milliseconds(ms)
    }

    /// A default token (agent, privacy officer): read from `file` in the
    /// secrets directory, or generated there (owner-only) on first use.
    static func generatedToken(in directory: String, file: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent(file)
        if let existing = try? String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines), !existing.isEmpty {
            return existing
        }
        var bytes = [UInt8](repeating: 0, count: 16)
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255) }
        let token = bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: path, contents: Data(token.utf8), attributes: [.posixPermissions: 0o600])
        return token
    }
}

/// Lets the desk's escalation publish through the lane created after it.
final class LaneBox: @unchecked Sendable {
    // Set once, before any service runs.
    var lane: EmergencyLane?
}


extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}

/// The built-in fleet simulator as a service of `telematics run`.
struct SimulatorService: Service {
    let fleet: FleetSimulator.Configuration
    let dictionary: [UInt8]?
    let rate: Double
    let producer: KafkaProducerConfiguration

    func run() async throws {
        var simulator = try FleetSimulator(configuration: fleet, dictionary: dictionary)
        var configuration = producer
        configuration.clientID = "telematics-simulator"
        _ = try await Simulate.publish(&simulator, limit: nil, rate: rate, configuration: configuration, showProgress: false) {
            Task.isShuttingDownGracefully || Task.isCancelled
        }
        // Done producing: keep running until the group shuts down, so a
        // finished simulator does not stop the pipeline.
        try? await gracefulShutdown()
    }
}

/// Shows what the pipeline does: a live line on a terminal, a log line every
/// ten seconds otherwise; ends the run after `duration` seconds, or once no
/// record has come for `exitWhenIdle` seconds and nothing is in flight.
struct RunDisplay: Service {
    let statistics: PipelineStatistics
    let emergency: EmergencyStatistics
    let duration: Double?
    let exitWhenIdle: Double?
    /// Lag beyond which the embedded cluster may drop records before they are read.
    var lagWarning: Int64? = nil

    func run() async throws {
        let started = monotonicSeconds()
        let terminal = isatty(2) != 0
        var lastLogged = started
        var previous = statistics.snapshot
        var previousEmergency = emergency.snapshot
        var warnedOfLag = false
        var lastTime = started
        var lastActivity = started
        var seenRecords = previous.tally.records
        while !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(500))
            let now = monotonicSeconds()
            let s = statistics.snapshot
            // Idle time counts only once the group has given this member partitions.
            let e = emergency.snapshot
            if let lagWarning, let lag = s.lag, lag > lagWarning, !warnedOfLag {
                warnedOfLag = true
                writeStandardError((terminal ? "\n" : "") + "warning: the pipeline is \(grouped(Int(lag))) records behind; the embedded cluster keeps "
                    + "only about 25,000 records per partition and drops older ones unread. Lower --simulate-rate, or run against a real cluster.\n")
            }
            let records = s.tally.records + e.hvWarnCalls
            if records != seenRecords || s.inFlight > 0 || s.assignedPartitions == 0 { lastActivity = now }
            seenRecords = records
            // Rates over the interval the line covers: half a second on a
            // terminal, the ten seconds since the last log line otherwise.
            if !terminal && now - lastLogged < 10 {
                if let duration, now - started >= duration { break }
                if let exitWhenIdle, now - lastActivity >= exitWhenIdle, s.inFlight == 0 { break }
                continue
            }
            let seconds = max(now - lastTime, 1e-3)
            let rate = Double(s.committedRecords - previous.committedRecords) / seconds
            let perKind = MessageKind.allCases.map { kind in
                let n = kind == .hvWarnCall
                    ? e.hvWarnCalls - previousEmergency.hvWarnCalls
                    : s.tally.byKind[kind, default: 0] - previous.tally.byKind[kind, default: 0]
                return "\(Self.short(kind)) \(grouped(Int(Double(n) / seconds)))"
            }.joined(separator: " ")
            previous = s
            previousEmergency = e
            lastTime = now
            let line = "run: \(grouped(s.committedRecords)) committed, \(grouped(Int(rate)))/s (\(perKind)), lag \(s.lag.map { grouped(Int($0)) } ?? "?"); " + Self.brief(s, emergency: e)
            if terminal {
                writeStandardError("\r" + line + "\u{1B}[K")
            } else if now - lastLogged >= 10 {
                writeStandardError(line + "\n")
                lastLogged = now
            }
            if let duration, now - started >= duration { break }
            if let exitWhenIdle, now - lastActivity >= exitWhenIdle, s.inFlight == 0 { break }
        }
        if terminal { writeStandardError("\n") }
    }

    static func short(_ kind: MessageKind) -> String {
        switch kind {
        case .teleserviceCall: "ts"
        case .hvWarnCall: "hv"
        case .rttiProbe: "rtti"
        case .chargeSession: "cs"
        case .consentState: "consent"
        }
    }

    static func brief(_ s: PipelineStatistics.Snapshot, emergency e: EmergencyStatistics.Snapshot) -> String {
        let rejected = s.tally.rejected.values.reduce(0, +)
        let dropped = s.tally.droppedForConsent.values.reduce(0, +)
        return "calls \(grouped(s.store.callsInserted)), cases +\(s.store.casesOpened)/~\(s.store.casesUpdated)/-\(s.store.casesClosed), "
            + "sessions \(grouped(s.store.sessionsInserted)), probe points \(grouped(s.store.probePointsInserted)), "
            + "alerts \(e.published) (repeats \(e.repeats)\(latencyP99(e))), hazards \(s.tally.hazards), rejected \(rejected), dropped by consent \(dropped), "
            + "store \(Int(s.lastStoreMs)) ms" + (s.paused ? ", PAUSED (store behind)" : "") + (s.storeRetries > 0 ? ", store retries \(s.storeRetries)" : "")
    }

    /// ", p99 12 ms" over the lane's recent alerts, or nothing before the first.
    static func latencyP99(_ e: EmergencyStatistics.Snapshot) -> String {
        guard !e.latenciesMs.isEmpty else { return "" }
        let sorted = e.latenciesMs.sorted()
        return ", p99 \(Int(sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))])) ms"
    }

    static func summary(_ s: PipelineStatistics.Snapshot, emergency e: EmergencyStatistics.Snapshot) -> String {
        // The emergency lane commits its HV warn calls itself, as they come.
        let committed = s.committedRecords + e.hvWarnCalls
        let rate = s.committedPerSecond.map { $0 * Double(committed) / Double(max(1, s.committedRecords)) }
        var lines = ["run: \(grouped(committed)) records committed in \(s.batches) batches"
            + (rate.map { ", \(grouped(Int($0))) records/s from the first record to the last commit" } ?? "")]
        lines.append("  by kind: " + MessageKind.allCases.map { "\($0.name) \($0 == .hvWarnCall ? e.hvWarnCalls + s.tally.byKind[$0, default: 0] : s.tally.byKind[$0, default: 0])" }.joined(separator: ", "))
        lines.append("  stored: " + brief(s, emergency: e))
        if !s.tally.rejected.isEmpty {
            lines.append("  rejected to the dead-letter topic: " + s.tally.rejected.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))
        }
        if !s.tally.droppedForConsent.isEmpty {
            lines.append("  dropped by consent: " + s.tally.droppedForConsent.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
