import ArgumentParser
import FleetSimulator
import Foundation
import TelematicsKafka
import TelematicsWire

/// `telematics simulate`: a simulated fleet onto Kafka or into a capture.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Simulate a fleet of vehicles around Denmark and publish their messages.",
        discussion: """
            The mix: RTTI probes ~70 %, teleservice calls ~12 % (rare BREAKDOWN and \
            ACCIDENT), charge sessions ~12 %, consent changes ~5 %, HV warn calls ~1 % \
            (some repeating an earlier event id). Sequence numbers rise per vehicle; \
            bodies are zstd frames (with the first dictionary of --dict-dir, if given). \
            The same --seed, --vehicles, --rate and --start-ms give the same records.

            To Kafka (--brokers), records go to their kind's WIRE.md topic keyed by VIN, \
            paced at --rate by a token bucket, with a live rate on a terminal; it runs \
            for --duration seconds, --records records, or until Ctrl-C, then waits for \
            every delivery. With --out, records are written to a capture file as fast as \
            possible (timestamps still follow --rate), and --records or --duration is required.
            """
    )

    @OptionGroup var kafka: KafkaConnectionOptions

    @Option(help: "Number of vehicles.")
    var vehicles: Int = 1000

    @Option(help: "Records per second, fleet-wide.")
    var rate: Double = 1000

    @Option(help: ArgumentHelp("Stop after this many seconds of simulated time.", valueName: "SECONDS"))
    var duration: Double?

    @Option(help: ArgumentHelp("Stop after this many records.", valueName: "N"))
    var records: Int?

    @Option(help: "Seed of every random choice.")
    var seed: UInt64 = 1

    @Option(name: .customLong("start-ms"), help: ArgumentHelp("Simulated time of the first record, ms since the epoch (default: now when publishing, 1763942400000 with --out).", valueName: "MS"))
    var startMs: Int64?

    @Option(name: .customLong("dict-dir"), help: ArgumentHelp("Directory of zstd dictionaries; bodies use the first *.dict by name.", valueName: "DIR"))
    var dictionaryDirectory: String?

    @Option(help: ArgumentHelp("Write a capture file instead of publishing.", valueName: "FILE.tmcap"))
    var out: String?

    func validate() throws {
        guard vehicles >= 1 else { throw ValidationError("--vehicles must be at least 1") }
        guard rate > 0 else { throw ValidationError("--rate must be positive") }
        if duration != nil && records != nil { throw ValidationError("give --duration or --records, not both") }
        if out != nil && duration == nil && records == nil { throw ValidationError("--out needs --records or --duration") }
        if out == nil && kafka.brokers == nil { throw ValidationError("give --brokers to publish, or --out to write a capture") }
    }

    /// The record limit, if any.
    var limit: Int? { records ?? duration.map { Int(($0 * rate).rounded()) } }

    func run() async throws {
        let dictionary = try loadDictionary()
        var config = FleetSimulator.Configuration(vehicles: vehicles, seed: seed, ratePerSecond: rate)
        config.startMs = startMs ?? (out != nil ? config.startMs : Int64(Date().timeIntervalSince1970 * 1000))
        var fleet = try FleetSimulator(configuration: config, dictionary: dictionary)
        if let out {
            try write(&fleet, to: out)
            return
        }
        let producerConfig = try kafka.producerConfiguration(clientID: "telematics-simulate")
        let interrupt = InterruptFlag()
        let (count, summary) = try await Self.publish(&fleet, limit: limit, rate: rate, configuration: producerConfig) { interrupt.isRaised }
        if let error = summary.error {
            writeStandardError("simulate: \(summary.enqueued - summary.delivered) of \(summary.enqueued) records NOT delivered: \(error)\n")
            throw ExitCode.failure
        }
        writeStandardError("simulate: \(grouped(count)) records delivered\n")
    }

    private func loadDictionary() throws -> [UInt8]? {
        guard let dictionaryDirectory else { return nil }
        guard let (path, bytes) = try Self.firstDictionary(in: dictionaryDirectory) else {
            throw ValidationError("--dict-dir \(dictionaryDirectory): no *.dict file")
        }
        writeStandardError("simulate: compressing with dictionary \(try ZstdDictionaries.dictionaryID(bytes, path: path)) (\(path))\n")
        return bytes
    }

    /// The first `*.dict` file of `directory` by name: the dictionary a
    /// simulated fleet compresses with; nil when the directory has none.
    static func firstDictionary(in directory: String) throws -> (path: String, bytes: [UInt8])? {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".dict") }.sorted()
        guard let first = names.first else { return nil }
        let path = directory + "/" + first
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("\(path): cannot read") }
        return (path, [UInt8](data))
    }

    private func write(_ fleet: inout FleetSimulator, to path: String) throws {
        let writer = try CaptureWriter(path: path)
        let progress = Progress(label: "simulate", unit: "records")
        let total = limit ?? 0
        for i in 0..<total {
            try writer.append(fleet.next().value)
            if i & 0x3FF == 0 { progress.update(i) }
        }
        try writer.close()
        progress.finish(total)
        if path != "-" { writeStandardError("simulate: \(grouped(total)) records written to \(path)\n") }
    }

    /// Publishes the fleet's records at `rate` until `limit` records or until
    /// `stop()` says so, then waits for every delivery.
    static func publish(
        _ fleet: inout FleetSimulator, limit: Int?, rate: Double, configuration: KafkaProducerConfiguration,
        showProgress: Bool = true, stop: () -> Bool
    ) async throws -> (Int, KafkaDeliverySummary) {
        let producer = try KafkaProducer(configuration: configuration)
        let deliveries = producer.deliveries()
        let progress = Progress(label: "simulate", unit: "records", enabled: showProgress)
        // Pace in steps of about 10 ms of records, so sleeping costs little at high rates.
        let step = max(1, Int(rate / 100))
        var bucket = TokenBucket(rate: rate, burst: Double(step))
        var count = 0
        let started = monotonicSeconds()
        while !stop() {
            let n = limit.map { min(step, $0 - count) } ?? step
            if n <= 0 { break }
            let wait = bucket.take(Double(n), now: monotonicSeconds())
            if wait > 0 { try await Task.sleep(nanoseconds: UInt64(wait * 1e9)) }
            for _ in 0..<n {
                let record = fleet.next()
                let enqueue = { () throws -> Bool in
                    try record.message.vin.withBytes { key in
                        try record.value.withUnsafeBytes { value in
                            try producer.enqueue(topic: record.kind.defaultTopic, key: key, value: value, into: deliveries)
                        }
                    }
                }
                while try !enqueue() { await producer.waitForQueueSpace() }
            }
            count += n
            // Lag: records the schedule says should be out by now but are not
            // (the producer or this machine cannot keep the rate).
            let behind = Int(rate * (monotonicSeconds() - started)) - count
            progress.update(count, detail: "target \(Int(rate))/s, behind schedule \(max(0, behind)), awaiting acks \(producer.pendingCount)")
        }
        progress.finish(count)
        let summary = await deliveries.wait()
        try await producer.close()
        return (count, summary)
    }
}
