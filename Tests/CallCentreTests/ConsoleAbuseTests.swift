import CallCentre
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOPosix
import Prometheus
import Synchronization
import TelematicsStores
import Testing

/// The console under abuse: bad or missing tokens, malformed requests,
/// oversized bodies, and hundreds of event-stream clients at once.
/// RELIABILITY.md "## Hostile input" lists what each injects and the figures.
@Suite("CallCentre console under abuse")
struct ConsoleAbuseTests {
    static let sseClients = ProcessInfo.processInfo.environment["TELEMATICS_SSE_CLIENTS"].flatMap { Int($0) } ?? 500

    @Test("writes with a missing, malformed or wrong bearer token get 401 and change nothing")
    func badTokens() async throws {
        try await ConsoleAPITests().withConsole { console, desk, _, _ in
            let id = try await desk.receive(Sample.hvWarn(event: "evt-auth")).record.id
            let path = "/api/alerts/\(Sample.vin)/evt-auth/ack"
            let headers: [HTTPFields] = [
                [:],
                [.authorization: ""],
                [.authorization: "Bearer"],
                [.authorization: "Bearer "],
                [.authorization: "Basic dG9rZW4tYW5uYQ=="],
                [.authorization: "token-anna"],
                [.authorization: "Bearer token-ann"],
                [.authorization: "Bearer token-annaa"],
                [.authorization: "Bearer TOKEN-ANNA"],
                [.authorization: "Bearer anna"],
                [.authorization: "Bearer " + String(repeating: "x", count: 60_000)],
                [.authorization: "Bearer token-anna, Bearer token-bob"],
            ]
            try await console.application().test(.router) { client in
                for (i, h) in headers.enumerated() {
                    let ack = try await client.execute(uri: path, method: .post, headers: h)
                    #expect(ack.status == .unauthorized, "header \(i)")
                    let who = try await client.execute(uri: "/api/whoami", method: .get, headers: h)
                    #expect(who.status == .unauthorized, "header \(i)")
                }
                // Many attempts in a row: still nothing changes.
                for i in 0..<500 {
                    _ = try await client.execute(uri: path, method: .post, headers: [.authorization: "Bearer guess-\(i)"])
                }
            }
            let record = try #require(try await desk.store.alert(id: id))
            #expect(record.isOpen && record.acknowledgedBy == nil && record.acknowledgedAtMs == nil)
        }
    }

    @Test("malformed bodies get 400, malformed paths and queries a 4xx or a harmless answer; nothing changes and the server keeps serving")
    func malformedRequests() async throws {
        try await ConsoleAPITests().withConsole { console, desk, _, _ in
            let id = try await desk.receive(Sample.hvWarn(event: "evt-bad")).record.id
            let path = "/api/alerts/\(Sample.vin)/evt-bad/ack"
            let token: HTTPFields = [.authorization: "Bearer token-anna", .contentType: "application/json"]
            try await console.application().test(.router) { client in
                for body in ["{", "{\"note\":", "[1,2]", "\"text\"", "null", "42", "\u{FF}\u{FE}", "{}}", String(repeating: "[", count: 10_000)] {
                    let r = try await client.execute(uri: path, method: .post, headers: token, body: ByteBuffer(string: body))
                    #expect(r.status == .badRequest, "body \(body.prefix(20))")
                }
                #expect(try await desk.store.alert(id: id)?.isOpen == true, "a rejected request acknowledged nothing")

                for uri in [
                    "/api/alerts?limit=abc&open=maybe&priority=%00", "/api/alerts?limit=-5", "/api/alerts?limit=99999999999999999999",
                    "/api/alerts?priority=" + String(repeating: "P", count: 20_000),
                ] {
                    let r = try await client.execute(uri: uri, method: .get)
                    #expect(r.status == .ok, "\(uri.prefix(60))")
                    #expect((try? JSONSerialization.jsonObject(with: Data(r.body.readableBytesView))) is [Any], "\(uri.prefix(60)) answers a JSON list")
                }
                for uri in [
                    "/api/alerts/%ZZ/%00", "/api/alerts/" + String(repeating: "V", count: 20_000) + "/x", "/api/alerts/../../etc/passwd",
                    "/api/alerts/\(Sample.vin)/evt-bad/ack/more", "/nothing-here",
                ] {
                    let r = try await client.execute(uri: uri, method: .get)
                    #expect((400..<500).contains(r.status.code), "\(uri.prefix(60)) -> \(r.status)")
                }
                let traversal = try await client.execute(uri: "/api/alerts/%2e%2e/%2e%2e/ack", method: .post, headers: token)
                #expect(traversal.status == .notFound)
                #expect(try await client.execute(uri: "/api/alerts", method: .delete).status.code >= 400)
                // A valid body is accepted.
                let ok = try await client.execute(uri: path, method: .post, headers: token, body: ByteBuffer(string: "{\"note\":\"on it\"}"))
                #expect(ok.status == .ok)
                #expect(try await client.execute(uri: "/healthz", method: .get).status == .ok)
            }
        }
    }

    @Test("a body over the 64 KiB limit gets 413, whether it says its length or not, and acknowledges nothing")
    func oversizedBodies() async throws {
        try await ConsoleAPITests().withConsole { console, desk, _, registry in
            let id = try await desk.receive(Sample.hvWarn(event: "evt-big")).record.id
            let path = "/api/alerts/\(Sample.vin)/evt-big/ack"
            try await console.application().test(.router) { client in
                let big = ByteBuffer(repeating: UInt8(ascii: "{"), count: ConsoleServer.maximumRequestBody + 1)
                let r = try await client.execute(uri: path, method: .post, headers: [.authorization: "Bearer token-anna"], body: big)
                #expect(r.status == .contentTooLarge)
                let get = try await client.execute(uri: "/api/alerts", method: .get, body: ByteBuffer(repeating: 0, count: 1 << 20))
                #expect(get.status == .contentTooLarge)
            }
            #expect(try await desk.store.alert(id: id)?.isOpen == true)

            // On a live server: a declared 10 GB body is refused at once, without waiting for it.
            try await withLiveConsole(desk: desk, registry: registry) { port in
                let started = ContinuousClock.now
                let declared = try await rawHTTP(
                    port: port,
                    "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer token-anna\r\nContent-Length: 10000000000\r\n\r\n{\"a\":")
                #expect(declared.hasPrefix("HTTP/1.1 413"), "\(declared.prefix(80))")
                #expect(ContinuousClock.now - started < .seconds(5))
                // Chunked, no length: refused once 64 KiB have come.
                let chunk = String(repeating: "a", count: 16 << 10)
                let chunked = (0..<8).map { _ in String(16 << 10, radix: 16) + "\r\n" + chunk + "\r\n" }.joined()
                let streamed = try await rawHTTP(
                    port: port,
                    "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer token-anna\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked + "0\r\n\r\n")
                #expect(streamed.hasPrefix("HTTP/1.1 413"), "\(streamed.prefix(80))")
            }
            #expect(try await desk.store.alert(id: id)?.isOpen == true)
        }
    }

    @Test("hundreds of event-stream clients at once: each gets the snapshot and a new alert, the server stays responsive, and their connections are released when they leave")
    func manyEventStreamClients() async throws {
        let clients = Self.sseClients
        try await ConsoleAPITests().withConsole { _, desk, _, registry in
            _ = try await desk.receive(Sample.hvWarn(event: "before"))
            // A short heartbeat: a client that left is noticed at the next one.
            try await withLiveConsole(desk: desk, registry: registry, heartbeat: .milliseconds(500)) { port in
                let counts = StreamCounts()
                let liveVIN = "WBA00000000SSE500"
                let figures = try await withTimeout(120, "\(clients) event-stream clients") {
                    try await withThrowingTaskGroup(of: Void.self) { group in
                        for _ in 0..<clients {
                            group.addTask {
                                try await withEventStream(port: port) { stream in
                                    try await stream.read(until: "event: ready")
                                    counts.connected.add(1, ordering: .relaxed)
                                    try await stream.read(until: liveVIN)
                                    counts.received.add(1, ordering: .relaxed)
                                }
                            }
                        }
                        while counts.connected.load(ordering: .relaxed) < clients { try await Task.sleep(for: .milliseconds(50)) }
                        let held = serverConnections(port: port)
                        #expect(held >= clients, "the server holds a connection per client")
                        // Responsive: /healthz and the alert list answer promptly.
                        var slowest = Duration.zero
                        for path in Array(repeating: "/healthz", count: 10) + ["/api/alerts", "/metrics"] {
                            let t0 = ContinuousClock.now
                            let answer = try await rawHTTP(port: port, "GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                            slowest = max(slowest, ContinuousClock.now - t0)
                            #expect(answer.hasPrefix("HTTP/1.1 200"), "\(path) with \(clients) streams open")
                        }
                        #expect(slowest < .seconds(10), "slowest answer \(slowest) with \(clients) streams open")
                        let t0 = ContinuousClock.now
                        _ = try await desk.receive(Sample.hvWarn(vin: liveVIN, event: "live"))
                        try await group.waitForAll()
                        return "\(clients) streams: \(held) server connections, slowest request \(slowest), new alert on every stream in \(ContinuousClock.now - t0)"
                    }
                }
                #expect(counts.received.load(ordering: .relaxed) == clients)
                // The clients have closed their connections: the server closes its
                // ends (and their fds) too, at the latest at the next heartbeat.
                let left = ContinuousClock.now
                var now = serverConnections(port: port)
                while now > 0 && ContinuousClock.now < left + .seconds(15) {
                    try await Task.sleep(for: .milliseconds(100))
                    now = serverConnections(port: port)
                }
                print("console: \(figures); server connections \(now) after \(ContinuousClock.now - left) once they left")
                #expect(now == 0, "the server released the connections of the clients that left (\(now) still held)")
                let health = try await rawHTTP(port: port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                #expect(health.hasPrefix("HTTP/1.1 200"))
            }
        }
    }
}

/// How many event-stream clients have their snapshot, and how many the new alert.
final class StreamCounts: Sendable {
    let connected = Atomic(0)
    let received = Atomic(0)
}

/// TCP connections the server on loopback `port` holds open, each with its
/// fd: ESTABLISHED, or CLOSE_WAIT (the client left and the server has not
/// closed yet), from /proc/net/tcp. Process-wide fd counts would include
/// whatever the other suites running in parallel open.
func serverConnections(port: Int) -> Int {
    // Read to the end: procfs files say they are empty, and a one-shot read stops after a page.
    guard let data = FileHandle(forReadingAtPath: "/proc/net/tcp")?.readDataToEndOfFile() else { return 0 }
    let table = String(decoding: data, as: UTF8.self)
    let local = ":" + String(format: "%04X", port)
    return table.split(separator: "\n").dropFirst().count { line in
        let fields = line.split(separator: " ")
        return fields.count > 3 && fields[1].hasSuffix(local) && (fields[3] == "01" || fields[3] == "08")
    }
}

/// Sends `request` as is on a new connection to the console at `port` and
/// returns everything read until the server closes it or a response is complete.
func rawHTTP(port: Int, _ request: String) async throws -> String {
    let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .connect(host: "127.0.0.1", port: port) { channel in
            channel.eventLoop.makeCompletedFuture {
                try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
            }
        }
    return try await channel.executeThenClose { inbound, outbound in
        // The server may answer (and close) before the whole request is written.
        try? await outbound.write(ByteBuffer(string: request))
        var text = ""
        do {
            for try await chunk in inbound {
                text += String(buffer: chunk)
                if responseComplete(text) { break }
            }
        } catch {
            // A reset after the answer (the server closed with unread request bytes): keep what was read.
            if text.isEmpty { throw error }
        }
        return text
    }
}

/// Whether `text` holds a whole HTTP/1.1 response with a Content-Length body.
private func responseComplete(_ text: String) -> Bool {
    guard let end = text.range(of: "\r\n\r\n") else { return false }
    let head = text[..<end.lowerBound].lowercased()
    guard let line = head.split(separator: "\r\n").first(where: { $0.hasPrefix("content-length:") }),
          let length = Int(line.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces))
    else { return false }
    return text.utf8.count - text[..<end.upperBound].utf8.count >= length
}
