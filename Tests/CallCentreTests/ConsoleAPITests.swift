import CallCentre
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import TelematicsStores
import Testing

/// The console's HTTP interface: JSON API, authentication, /metrics,
/// /healthz, /readyz and the server-sent events feed.
@Suite("CallCentre console API")
struct ConsoleAPITests {
    static let agents = ["token-anna": "anna", "token-bob": "bob"]

    /// A console on a fresh desk (SQLite), with the registry behind /metrics.
    func withConsole(
        ready: @escaping @Sendable () async -> Bool = { true },
        _ body: (ConsoleServer, AlertDesk, ManualClock, PrometheusCollectorRegistry) async throws -> Void
    ) async throws {
        try await withAlertStore(.sqlite) { made in
            let clock = ManualClock()
            let registry = PrometheusCollectorRegistry()
            let desk = AlertDesk(
                store: made.store, clock: clock.closure, publish: { _ in }, metrics: PrometheusMetricsFactory(registry: registry))
            let console = ConsoleServer(
                desk: desk, configuration: ConsoleConfiguration(host: "127.0.0.1", port: 0, agents: Self.agents),
                registry: registry, ready: ready)
            try await body(console, desk, clock, registry)
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ response: TestResponse) throws -> T {
        try JSONDecoder().decode(type, from: Data(response.body.readableBytesView))
    }

    @Test("acknowledging needs an agent's bearer token: 401 without, 200 with, who and when recorded")
    func acknowledgeAuthentication() async throws {
        try await withConsole { console, desk, clock, _ in
            let id = try await desk.receive(Sample.hvWarn(event: "evt-9")).record.id
            try await console.application().test(.router) { client in
                let path = "/api/alerts/\(Sample.vin)/evt-9/ack"
                #expect(try await client.execute(uri: path, method: .post).status == .unauthorized)
                let wrong = try await client.execute(uri: path, method: .post, headers: [.authorization: "Bearer nope"])
                #expect(wrong.status == .unauthorized)
                #expect(wrong.headers[.wwwAuthenticate]?.hasPrefix("Bearer") == true)
                #expect(try await desk.store.alert(id: id)?.isOpen == true)

                clock.advance(by: 12_000)
                let ok = try await client.execute(uri: path, method: .post, headers: [.authorization: "Bearer token-anna"])
                #expect(ok.status == .ok)
                let record = try Self.decode(AlertRecord.self, ok)
                #expect(record.acknowledgedBy == "anna" && record.acknowledgedAtMs == clock())

                let again = try await client.execute(uri: path, method: .post, headers: [.authorization: "Bearer token-bob"])
                #expect(try Self.decode(AlertRecord.self, again).acknowledgedBy == "anna")
                let missing = try await client.execute(uri: "/api/alerts/X/none/ack", method: .post, headers: [.authorization: "Bearer token-bob"])
                #expect(missing.status == .notFound)

                let who = try await client.execute(uri: "/api/whoami", method: .get, headers: [.authorization: "Bearer token-bob"])
                #expect(try Self.decode([String: String].self, who) == ["agent": "bob"])
                #expect(try await client.execute(uri: "/api/whoami", method: .get).status == .unauthorized)
            }
        }
    }

    @Test("listing: open and priority filters, P0 before P1, newest first; one alert by id")
    func listing() async throws {
        try await withConsole { console, desk, clock, _ in
            let p1 = try await desk.receive(Sample.breakdown()).record
            clock.advance(by: 1_000)
            let p0old = try await desk.receive(Sample.hvWarn(event: "old")).record
            clock.advance(by: 1_000)
            let p0new = try await desk.receive(Sample.hvWarn(event: "new")).record
            _ = try await desk.acknowledge(id: p0old.id, by: "anna")

            try await console.application().test(.router) { client in
                func ids(_ query: String) async throws -> [String] {
                    let r = try await client.execute(uri: "/api/alerts\(query)", method: .get)
                    #expect(r.status == .ok)
                    #expect(r.headers[.contentType] == "application/json")
                    return try Self.decode([AlertRecord].self, r).map(\.id)
                }
                #expect(try await ids("") == [p0new.id, p0old.id, p1.id])
                #expect(try await ids("?open=true") == [p0new.id, p1.id])
                #expect(try await ids("?priority=P0") == [p0new.id, p0old.id])
                #expect(try await ids("?open=true&priority=P1") == [p1.id])
                #expect(try await ids("?limit=1") == [p0new.id])

                let one = try await client.execute(uri: "/api/alerts/\(Sample.vin)/old", method: .get)
                #expect(one.status == .ok)
                let record = try Self.decode(AlertRecord.self, one)
                #expect(record.id == p0old.id && record.acknowledgedBy == "anna")
                // The JSON keeps the wire names of the alert.
                let text = String(buffer: one.body)
                #expect(text.contains("\"event_id\":\"old\"") && text.contains("\"acknowledged_by\":\"anna\""))
                #expect(try await client.execute(uri: "/api/alerts/\(Sample.vin)/none", method: .get).status == .notFound)
                // The P1 call id has the same two parts.
                #expect(try await client.execute(uri: "/api/alerts/\(p1.id)", method: .get).status == .ok)
            }
        }
    }

    @Test("/metrics exports the desk's and the test's metrics; /healthz; /readyz follows its closure")
    func metricsAndHealth() async throws {
        let isReady = ReadyFlag()
        try await withConsole(ready: { isReady.value }) { console, desk, _, registry in
            _ = try await desk.receive(Sample.hvWarn())
            registry.makeCounter(descriptor: MetricNameDescriptor(metricName: "callcentre_test_marker", unitName: "total", helpText: "recorded by the test")).increment(by: Int64(3))
            try await console.application().test(.router) { client in
                let metrics = try await client.execute(uri: "/metrics", method: .get)
                #expect(metrics.status == .ok)
                let text = String(buffer: metrics.body)
                #expect(text.contains("callcentre_test_marker_total 3"))
                #expect(text.contains("callcentre_alerts_received_total{priority=\"P0\"} 1"))

                #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/readyz", method: .get).status == .serviceUnavailable)
                isReady.value = true
                #expect(try await client.execute(uri: "/readyz", method: .get).status == .ok)

                let page = try await client.execute(uri: "/", method: .get)
                #expect(page.status == .ok && page.headers[.contentType]?.hasPrefix("text/html") == true)
                #expect(String(buffer: page.body).contains("/console.js"))
                #expect(try await client.execute(uri: "/console.js", method: .get).status == .ok)
                #expect(try await client.execute(uri: "/console.css", method: .get).status == .ok)
            }
        }
    }

    @Test("the event stream sends the current alerts, then a new alert as it arrives")
    func serverSentEvents() async throws {
        try await withConsole { _, desk, _, registry in
            let before = try await desk.receive(Sample.hvWarn(event: "before")).record
            try await withLiveConsole(desk: desk, registry: registry) { port in
                try await withTimeout(20, "the event stream") {
                    try await withEventStream(port: port) { stream in
                        try await stream.read(until: "event: ready")
                        let snapshot = stream.text
                        #expect(snapshot.contains("HTTP/1.1 200"))
                        #expect(snapshot.lowercased().contains("content-type: text/event-stream"))
                        #expect(snapshot.contains("data: {") && snapshot.contains("\"id\":\"\(before.id)\""))

                        let new = try await desk.receive(Sample.hvWarn(vin: "WBA00000000000777", event: "live")).record
                        try await stream.read(until: "\"id\":\"\(new.id)\"")
                        #expect(stream.text.components(separatedBy: "data: {").count - 1 >= 2)
                    }
                }
            }
        }
    }
}

/// A flag the test flips for /readyz.
final class ReadyFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var _value = false
    var value: Bool {
        get { lock.withLock { _value } }
        set { lock.withLock { _value = newValue } }
    }
}

/// Runs a console on a kernel-chosen loopback port while `body` runs, then
/// shuts it down gracefully (open event streams end with it).
func withLiveConsole(
    desk: AlertDesk, registry: PrometheusCollectorRegistry, agents: [String: String] = ConsoleAPITests.agents,
    heartbeat: Duration = .seconds(15), _ body: @Sendable (Int) async throws -> Void
) async throws {
    let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
    var console = ConsoleServer(
        desk: desk, configuration: ConsoleConfiguration(host: "127.0.0.1", port: 0, agents: agents), registry: registry,
        onRunning: { port in portContinuation.yield(port) })
    console.heartbeat = heartbeat
    var logger = Logger(label: "callcentre.tests")
    logger.logLevel = .warning
    let group = ServiceGroup(configuration: .init(services: [console], logger: logger))
    let server = Task { try await group.run() }
    do {
        let port = try await withTimeout(30, "the console to listen") {
            for await port in ports { return port }
            throw TimedOut(what: "a port", seconds: 0)
        }
        #expect(port > 0)
        try await body(port)
    } catch {
        await group.triggerGracefulShutdown()
        _ = try? await server.value
        throw error
    }
    await group.triggerGracefulShutdown()
    try await withTimeout(10, "the console to stop") { try await server.value }
}

/// Reads a `GET /api/events` response as raw HTTP/1.1, keeping everything read.
struct EventStreamReader {
    var iterator: NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator
    /// What was read so far.
    var text = ""

    /// Reads until what was read contains `marker`.
    mutating func read(until marker: String) async throws {
        while !text.contains(marker) {
            guard let chunk = try await iterator.next() else { throw TimedOut(what: "\(marker) (the stream ended)", seconds: 0) }
            text += String(buffer: chunk)
        }
    }
}

/// Opens `GET /api/events` on the console at `port` and runs `body` on the response as it streams.
func withEventStream(port: Int, _ body: (inout EventStreamReader) async throws -> Void) async throws {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    try await channel.executeThenClose { inbound, outbound in
        try await outbound.write(ByteBuffer(string: "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"))
        var reader = EventStreamReader(iterator: inbound.makeAsyncIterator())
        try await body(&reader)
    }
}
