import Foundation
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle
import TelematicsStores

/// The call-centre console: the agents' web page, its JSON API and live
/// feed, and the process's /metrics, /healthz and /readyz, on one
/// Hummingbird server.
///
/// Routes:
/// - `GET /`: the page (with `/console.css` and `/console.js`), served from
///   string literals in the binary.
/// - `GET /api/alerts?open=true&priority=P0&limit=N`: alerts, P0 before P1, newest first.
/// - `GET /api/alerts/{vin}/{event}`: one alert (its id is `vin/event`).
/// - `POST /api/alerts/{vin}/{event}/ack`: acknowledges it as the agent of
///   the bearer token; 401 without a known token; a body, if sent, must be a
///   JSON object (400 otherwise; its members are not used).
/// - `GET /api/whoami`: the agent of the bearer token (401 otherwise).
/// - `GET /api/events`: `text/event-stream`; the current alerts first, then
///   every change, each a `data:` line with the alert record's JSON.
/// - `GET /metrics`: the registry in Prometheus text format.
/// - `GET /healthz`: 200 while the process serves; `GET /readyz`: 200 when
///   `ready()` says so, else 503.
///
/// Reads are open (bind to loopback, the default); writes need
/// `Authorization: Bearer <token>`. A request body over
/// ``maximumRequestBody`` bytes is answered 413 without being read.
public struct ConsoleServer: Service {
    /// The desk the console shows and acts on.
    public let desk: AlertDesk
    /// Address and agents.
    public let configuration: ConsoleConfiguration
    private let registry: PrometheusCollectorRegistry
    private let ready: @Sendable () async -> Bool
    private let onRunning: @Sendable (Int) async -> Void
    let logger: Logger
    /// Answers the privacy API (`/api/privacy/...`); none, no such routes.
    public var privacy: (any VehicleDataRequests)?
    /// How often an idle event stream sends a comment, so a dead client is
    /// noticed (and its connection released).
    public var heartbeat: Duration = .seconds(15)
    /// The largest request body accepted (no route needs more than a small JSON object).
    public static let maximumRequestBody = 64 << 10

    /// A console for `desk`.
    ///
    /// - Parameters:
    ///   - registry: what `/metrics` exports.
    ///   - ready: what `/readyz` answers (e.g. "the pipeline is consuming").
    ///   - onRunning: called with the bound port once the server listens
    ///     (the way to learn the port when `configuration.port` is 0).
    public init(
        desk: AlertDesk,
        configuration: ConsoleConfiguration = ConsoleConfiguration(),
        registry: PrometheusCollectorRegistry,
        ready: @escaping @Sendable () async -> Bool = { true },
        onRunning: @escaping @Sendable (Int) async -> Void = { _ in },
        logger: Logger = Logger(label: "telematics.callcentre.console")
    ) {
        self.desk = desk
        self.configuration = configuration
        self.registry = registry
        self.ready = ready
        self.onRunning = onRunning
        self.logger = logger
    }

    /// The Hummingbird application (run it, or test it with HummingbirdTesting).
    public func application() -> some ApplicationProtocol {
        let onRunning = self.onRunning
        return Application(
            router: router(),
            configuration: ApplicationConfiguration(
                address: .hostname(configuration.host, port: configuration.port), serverName: "telematics-callcentre"),
            onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Serves until cancelled or shut down gracefully.
    public func run() async throws {
        try await application().run()
    }

    /// The routes.
    public func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: RequestBodyLimit(maximumBytes: Self.maximumRequestBody))
        let desk = self.desk, agents = configuration.agents, registry = self.registry, ready = self.ready
        let heartbeat = self.heartbeat

        router.get("/") { _, _ in Self.asset(ConsoleAssets.html, type: "text/html; charset=utf-8") }
        router.get("/console.css") { _, _ in Self.asset(ConsoleAssets.css, type: "text/css; charset=utf-8") }
        router.get("/console.js") { _, _ in Self.asset(ConsoleAssets.javascript, type: "text/javascript; charset=utf-8") }

        router.get("/healthz") { _, _ in Self.text("ok\n", status: .ok) }
        router.get("/readyz") { _, _ in
            await ready() ? Self.text("ready\n", status: .ok) : Self.text("not ready\n", status: .serviceUnavailable)
        }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: registry.emitToBuffer())))
        }

        router.get("/api/whoami") { request, _ in
            guard let agent = Self.agent(request, agents) else { return Self.unauthorized() }
            return try Self.json(["agent": agent])
        }
        router.get("/api/alerts") { request, _ in
            let query = request.uri.queryParameters
            let openOnly = query["open"].map { $0 == "true" || $0 == "1" } ?? false
            let priority = query["priority"].map(String.init)
            let limit = query["limit"].flatMap { Int($0) } ?? 500
            return try Self.json(try await desk.store.alerts(openOnly: openOnly, priority: priority, limit: min(max(limit, 0), 5000)))
        }
        router.get("/api/alerts/:vin/:event") { _, context in
            guard let record = try await desk.store.alert(id: try Self.alertID(context)) else { return Self.text("no such alert\n", status: .notFound) }
            return try Self.json(record)
        }
        router.post("/api/alerts/:vin/:event/ack") { request, context in
            guard let agent = Self.agent(request, agents) else { return Self.unauthorized() }
            guard Self.isEmptyOrJSONObject(try await request.body.collect(upTo: Self.maximumRequestBody)) else {
                return Self.text("the body must be empty or a JSON object\n", status: .badRequest)
            }
            guard let record = try await desk.acknowledge(id: try Self.alertID(context), by: agent) else {
                return Self.text("no such alert\n", status: .notFound)
            }
            return try Self.json(record)
        }
        router.get("/api/events") { _, _ in
            Response(
                status: .ok,
                headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"],
                body: ResponseBody { writer in try await Self.stream(desk: desk, heartbeat: heartbeat, into: &writer) })
        }
        addPrivacyRoutes(to: router)
        return router
    }

    // MARK: - Responses

    private static func asset(_ text: String, type: String) -> Response {
        Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-cache"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    static func text(_ text: String, status: HTTPResponse.Status) -> Response {
        Response(status: status, headers: [.contentType: "text/plain; charset=utf-8"], body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    private static func unauthorized() -> Response {
        Response(
            status: .unauthorized,
            headers: [.contentType: "text/plain; charset=utf-8", .wwwAuthenticate: "Bearer realm=\"callcentre\""],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "an agent's bearer token is needed\n")))
    }

    static func json(_ value: some Encodable) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Response(
            status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    /// The agent of the request's `Authorization: Bearer <token>`, if known.
    static func agent(_ request: Request, _ agents: [String: String]) -> String? {
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return agents[parts[1].trimmingCharacters(in: .whitespaces)]
    }

    /// Whether a (collected) request body is empty or one JSON object.
    private static func isEmptyOrJSONObject(_ buffer: ByteBuffer) -> Bool {
        guard buffer.readableBytes > 0 else { return true }
        return (try? JSONSerialization.jsonObject(with: Data(buffer.readableBytesView))) is [String: Any]
    }

    /// `vin/event` from the path (each part percent-decoded).
    private static func alertID(_ context: BasicRequestContext) throws -> String {
        let vin = try context.parameters.require("vin"), event = try context.parameters.require("event")
        return (vin.removingPercentEncoding ?? vin) + "/" + (event.removingPercentEncoding ?? event)
    }

    /// The event stream: subscribes first (so no change falls between the
    /// two), sends the current alerts, then every change and a heartbeat
    /// comment while idle; ends when the client goes away or the server
    /// shuts down.
    private static func stream(desk: AlertDesk, heartbeat: Duration, into writer: inout any ResponseBodyWriter) async throws {
        let changes = await desk.updates()
        let (frames, output) = AsyncStream.makeStream(of: ByteBuffer.self, bufferingPolicy: .bufferingNewest(1024))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        @Sendable func frame(_ record: AlertRecord) -> ByteBuffer {
            let json = (try? encoder.encode(record)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return ByteBuffer(string: "data: \(json)\n\n")
        }
        // The snapshot, oldest first, so that a client inserting at the top keeps the order.
        var snapshot = ByteBuffer(string: "retry: 2000\n\n")
        for record in try await desk.store.alerts(openOnly: false, priority: nil, limit: 500).reversed() {
            var f = frame(record)
            snapshot.writeBuffer(&f)
        }
        snapshot.writeString("event: ready\ndata: {}\n\n")
        try await writer.write(snapshot)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await record in changes { output.yield(frame(record)) }
                output.finish()
            }
            group.addTask {
                while !Task.isCancelled {
                    try await Task.sleep(for: heartbeat)
                    output.yield(ByteBuffer(string: ": heartbeat\n\n"))
                }
            }
            defer { group.cancelAll() }
            for await buffer in frames.cancelOnGracefulShutdown() { try await writer.write(buffer) }
        }
        try await writer.finish(nil)
    }
}

/// Answers 413 to a request whose body is over `maximumBytes` (by its
/// Content-Length, before reading it, or while collecting it) and otherwise
/// hands on the request with its body collected.
struct RequestBodyLimit<Context: RequestContext>: RouterMiddleware {
    let maximumBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > maximumBytes {
            return Self.tooLarge(maximumBytes)
        }
        var request = request
        do {
            _ = try await request.collectBody(upTo: maximumBytes)
        } catch is NIOTooManyBytesError {
            return Self.tooLarge(maximumBytes)
        }
        return try await next(request, context)
    }

    private static func tooLarge(_ maximumBytes: Int) -> Response {
        Response(
            status: .contentTooLarge, headers: [.contentType: "text/plain; charset=utf-8", .connection: "close"],
            body: ResponseBody(byteBuffer: ByteBuffer(string: "request body over \(maximumBytes) bytes\n")))
    }
}
