@preconcurrency import Crypto
import Foundation
import TelematicsStores
import TelematicsTestSupport
import Testing

/// The privacy promises over a whole run of the real processes: `telematics
/// broker`, `simulate` into it, `run` from it into SQLite, then the
/// `privacy`, `retention` and `keys` commands on what it stored.
@Suite("Privacy end to end (processes)", .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct PrivacyEndToEndTests {
    @Test("no VIN, plain or hashed without the key, reaches the traffic store or traffic.probes; export, erase, retention and key rotation work on the run's stores")
    func wholeRun() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tm-privacy-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let secrets = dir + "/secrets"

        // A broker of its own, a simulated fleet into it, the pipeline from it.
        let brokerOut = Pipe()
        let broker = try TelematicsBinary.start(["broker", "--brokers", "1", "--partitions", "2"], stdout: brokerOut)
        defer { broker.terminate(); broker.waitUntilExit() }
        let bootstrap = try #require(try firstLine(of: brokerOut))
        let simulated = try TelematicsBinary.run(
            ["simulate", "--brokers", bootstrap, "--vehicles", "40", "--rate", "4000", "--records", "4000", "--seed", "11"])
        #expect(simulated.status == 0, "simulate: \(simulated.stderr.suffix(500))")
        let run = try TelematicsBinary.run([
            "run", "--brokers", bootstrap, "--sqlite", dir, "--secrets", secrets, "--exit-when-idle", "3", "--console", "off",
            "--retention-every", "off",
        ])
        #expect(run.status == 0, "run: \(run.stderr.suffix(1500))")

        // Every VIN the run saw, and what anyone could compute from one without the key.
        let db = dir + "/" + SQLiteStore.fileName
        let vins = try sqlite3(db, "SELECT vin FROM vehicle_states UNION SELECT vin FROM consents UNION SELECT vin FROM charge_sessions")
            .split(separator: "\n").map(String.init)
        #expect(vins.count >= 30, "the run stored most of the 40 vehicles: \(vins.count)")
        let needles = vins.flatMap { vin -> [String] in
            let sha = SHA256.hash(data: Array(vin.utf8)).map { String(format: "%02x", $0) }.joined()
            return [vin, vin.lowercased(), sha, String(sha.prefix(32)), sha.uppercased()]
        }
        let traffic = try sqlite3(db, ".dump probes traffic_aggregates traffic_speed_buckets")
        #expect(traffic.contains("INSERT INTO probes") && traffic.contains("INSERT INTO traffic_aggregates"), "the traffic tables hold rows to search")
        let forwarded = try kcat(["-C", "-b", bootstrap, "-t", "traffic.probes", "-e", "-q", "-f", "%k %h %s\n"])
        #expect(!forwarded.isEmpty, "hazards were forwarded")
        for needle in needles {
            // Searched as UTF-8 bytes: Foundation's `contains` bridges the
            // whole dump (megabytes) to an NSString once per needle.
            #expect(traffic.utf8.firstRange(of: needle.utf8) == nil, "the traffic store holds \(needle)")
            #expect(forwarded.utf8.firstRange(of: needle.utf8) == nil, "traffic.probes holds \(needle)")
        }

        // A vehicle with calls, a charge session whose position was stored, and
        // probes (found by the export under its pseudonyms: the store has no VIN for them).
        let candidates = try sqlite3(db, """
            SELECT DISTINCT c.vin FROM charge_sessions c JOIN teleservice_calls t ON t.vin = c.vin
            WHERE c.sealed_position IS NOT NULL ORDER BY c.vin LIMIT 20
            """).split(separator: "\n").map(String.init)
        let store = ["--sqlite", dir, "--secrets", secrets]
        var found: (String, [String: Any])?
        for vin in candidates {
            let document = try parse(try command(["privacy", "export", vin] + store))
            if !((document["traffic_probes"] as? [Any]) ?? []).isEmpty { found = (vin, document); break }
        }
        let (owner, exported) = try #require(found, "the export finds probes under the pseudonyms of one of \(candidates.count) vehicles")
        let sessions = try #require(exported["charge_sessions"] as? [[String: Any]])
        #expect(sessions.contains { $0["position"] is [String: Any] }, "the export opens the sealed positions")
        #expect(!((exported["teleservice_calls"] as? [Any]) ?? []).isEmpty)

        // Key rotation: a new current key, every session's id and position re-sealed with it, still readable.
        let sealed = Int(try sqlite3(db, "SELECT count(*) FROM charge_sessions").trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect(try parse(try command(["keys", "new", "--secrets", secrets]))["current_key_id"] as? String == "k2")
        let rotated = try parse(try command(["keys", "rotate"] + store + ["--batch", "7"]))
        #expect(rotated["resealed"] as? Int == sealed && sealed > 0)
        #expect(try sqlite3(db, "SELECT DISTINCT key_id FROM charge_sessions").trimmingCharacters(in: .whitespacesAndNewlines) == "k2")
        let reexported = try parse(try command(["privacy", "export", owner] + store))
        #expect(((reexported["charge_sessions"] as? [[String: Any]]) ?? []).contains { $0["position"] is [String: Any] })

        // Erase, then export: nothing erasable is left; the erase names what it kept.
        let erased = try command(["privacy", "erase", owner] + store)
        #expect(erased.contains("\"kept\"") && erased.contains("vehicle_states"))
        let after = try parse(try command(["privacy", "export", owner] + store))
        for key in ["teleservice_calls", "maintenance_cases", "charge_sessions", "traffic_probes"] {
            #expect((after[key] as? [Any])?.isEmpty == true, "\(key) after erase")
        }

        // Retention by hand: a dry run counts, the pass deletes the same, stats count it.
        let dry = try command(["retention", "run", "--dry-run", "--retention", "raw-probes=1s"] + ["--sqlite", dir])
        let wouldDelete = try dry.split(separator: "\n").map { try parse(String($0)) }
            .first { $0["rule"] as? String == "raw-probes" }?["would_delete"] as? Int ?? -1
        #expect(wouldDelete > 0)
        let pass = try command(["retention", "run", "--retention", "raw-probes=1s", "--batch", "100", "--sqlite", dir])
        let deleted = try pass.split(separator: "\n").map { try parse(String($0)) }.first { $0["rule"] as? String == "raw-probes" }?["deleted"] as? Int
        #expect(deleted == wouldDelete)
        let stats = try parse(try command(["query", "stats", "--sqlite", dir]))
        #expect((stats["retention"] as? [String: Int])?["raw-probes"] == deleted)
        #expect((stats["erased"] as? [String: Int])?["vehicles"] == 1)
        #expect((stats["rows"] as? [String: Int])?["probe_points"] == 0)
    }
}

/// Runs a telematics command that must succeed; its standard output.
private func command(_ arguments: [String]) throws -> String {
    let out = try TelematicsBinary.run(arguments)
    guard out.status == 0 else {
        Issue.record("telematics \(arguments.joined(separator: " ")) exited \(out.status): \(out.stderr.suffix(800))")
        throw CocoaError(.executableLoad)
    }
    return out.stdout
}

private func firstLine(of pipe: Pipe) throws -> String? {
    var line = Data()
    while true {
        let byte = ProcessOutput.readSome(pipe.fileHandleForReading, limit: 1)
        if byte.isEmpty || byte == Data([0x0a]) { break }
        line += byte
    }
    return line.isEmpty ? nil : String(decoding: line, as: UTF8.self)
}

private func kcat(_ arguments: [String]) throws -> String { try tool(["kcat"] + arguments) }
