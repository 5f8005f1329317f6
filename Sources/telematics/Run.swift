import ArgumentParser
import FleetSimulator
import Foundation
import Logging
import ServiceLifecycle
import TelematicsKafka
import TelematicsPipeline
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
            --data-dir. With --brokers, consumes a real cluster (Apache Kafka, \
            Redpanda, a managed service) and nothing is simulated unless --simulate-rate \
            is given. --postgres URL stores into PostgreSQL instead of SQLite.
            A record's offset is committed only after its store transaction, its \
            alerts and probes, or its dead letter are durable. SIGINT or SIGTERM \
            drains the batches in flight, commits and exits 0.
            """
    )

    @OptionGroup var kafka: KafkaConnectionOptions

    @Option(help: "Consumer group of the pipeline instances.")
    var group = "telematics"

    @Option(help: ArgumentHelp("Store into SQLite files in this directory (the default).", valueName: "DIR"))
    var sqlite = "data"

    @Option(help: ArgumentHelp("Store into PostgreSQL at this URL instead of SQLite.", valueName: "postgres://USER:PASSWORD@HOST:PORT/DB"))
    var postgres: String?

    @Option(help: ArgumentHelp("Directory of the pseudonym and sealing keys (generated on first use, owner-only).", valueName: "DIR"))
    var secrets = "data/secrets"

    @Option(name: .customLong("exit-when-idle"), help: ArgumentHelp("Stop after this many seconds without new records, everything committed (batch runs, tests).", valueName: "SECONDS"))
    var exitWhenIdle: Double?

    @Option(name: .customLong("dict-dir"), help: ArgumentHelp("Directory of zstd dictionaries (*.dict) the vehicles compress with.", valueName: "DIR"))
    var dictionaryDirectory: String?

    @Option(name: .customLong("batch-size"), help: "Records per poll and per store transaction.")
    var batchSize = 2_000

    @Option(help: "Partitions per topic of the embedded cluster.")
    var partitions = 12

    @Option(name: .customLong("simulate-rate"), help: ArgumentHelp("Records/s of the built-in fleet simulator (default 2000 on the embedded cluster, off otherwise; 0 turns it off).", valueName: "R"))
    var simulateRate: Double?

    @Option(name: .customLong("simulate-vehicles"), help: "Vehicles of the built-in simulator.")
    var simulateVehicles = 1_000

    @Option(help: ArgumentHelp("Stop after this many seconds (default: run until SIGINT/SIGTERM).", valueName: "S"))
    var duration: Double?

    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "telematics.run")

        let dictionaries = try dictionaryDirectory.map { try ZstdDictionaries(directory: $0) } ?? .none
        let secrets = try PipelineSecrets.loadOrCreate(in: self.secrets) { logger.notice("\($0)") }

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

        let store: any TelematicsStore
        if let postgres {
            store = try await PostgresStore(url: postgres)
            logger.notice("stores: PostgreSQL")
        } else {
            store = try await SQLiteStore(directory: sqlite)
            logger.notice("stores: SQLite in \(sqlite)")
        }

        let statistics = PipelineStatistics()
        var services: [any Service] = [
            BulkLane(configuration: configuration, store: store, dictionaries: dictionaries, secrets: secrets, statistics: statistics),
            RunDisplay(statistics: statistics, duration: duration, exitWhenIdle: exitWhenIdle),
        ]
        let rate = simulateRate ?? (embedded != nil ? 2_000 : 0)
        if rate > 0 {
            var fleetConfiguration = FleetSimulator.Configuration(vehicles: simulateVehicles, ratePerSecond: rate)
            fleetConfiguration.startMs = Int64(Date().timeIntervalSince1970 * 1000)
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
        withExtendedLifetime(embedded) {}
        let s = statistics.snapshot
        writeStandardError(RunDisplay.summary(s) + "\n")
    }
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
    let duration: Double?
    let exitWhenIdle: Double?

    func run() async throws {
        let started = monotonicSeconds()
        let terminal = isatty(2) != 0
        var lastLogged = started
        var previous = statistics.snapshot
        var lastTime = started
        var lastActivity = started
        var seenRecords = previous.tally.records
        while !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .milliseconds(500))
            let now = monotonicSeconds()
            let s = statistics.snapshot
            // Idle time counts only once the group has given this member partitions.
            if s.tally.records != seenRecords || s.inFlight > 0 || s.assignedPartitions == 0 { lastActivity = now }
            seenRecords = s.tally.records
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
                "\(Self.short(kind)) \(grouped(Int(Double(s.tally.byKind[kind, default: 0] - previous.tally.byKind[kind, default: 0]) / seconds)))"
            }.joined(separator: " ")
            previous = s
            lastTime = now
            let line = "run: \(grouped(s.committedRecords)) committed, \(grouped(Int(rate)))/s (\(perKind)), lag \(s.lag.map { grouped(Int($0)) } ?? "?"); " + Self.brief(s)
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

    static func brief(_ s: PipelineStatistics.Snapshot) -> String {
        let rejected = s.tally.rejected.values.reduce(0, +)
        let dropped = s.tally.droppedForConsent.values.reduce(0, +)
        return "calls \(grouped(s.store.callsInserted)), cases +\(s.store.casesOpened)/~\(s.store.casesUpdated)/-\(s.store.casesClosed), "
            + "sessions \(grouped(s.store.sessionsInserted)), probe points \(grouped(s.store.probePointsInserted)), "
            + "alerts \(s.tally.alerts), hazards \(s.tally.hazards), rejected \(rejected), dropped by consent \(dropped), "
            + "store \(Int(s.lastStoreMs)) ms" + (s.paused ? ", PAUSED (store behind)" : "") + (s.storeRetries > 0 ? ", store retries \(s.storeRetries)" : "")
    }

    static func summary(_ s: PipelineStatistics.Snapshot) -> String {
        var lines = ["run: \(grouped(s.committedRecords)) records committed in \(s.batches) batches"
            + (s.committedPerSecond.map { ", \(grouped(Int($0))) records/s from the first record to the last commit" } ?? "")]
        lines.append("  by kind: " + MessageKind.allCases.map { "\($0.name) \(s.tally.byKind[$0, default: 0])" }.joined(separator: ", "))
        lines.append("  stored: " + brief(s))
        if !s.tally.rejected.isEmpty {
            lines.append("  rejected to the dead-letter topic: " + s.tally.rejected.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\($0.key.rawValue) \($0.value)" }.joined(separator: ", "))
        }
        if !s.tally.droppedForConsent.isEmpty {
            lines.append("  dropped by consent: " + s.tally.droppedForConsent.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        return lines.joined(separator: "\n")
    }
}
