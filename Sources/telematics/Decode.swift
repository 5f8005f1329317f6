import ArgumentParser
import TelematicsWire

#if canImport(Glibc)
import Glibc
#endif

/// `telematics decode`: a capture file as canonical JSON Lines (WIRE.md).
struct Decode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Decode a .tmcap capture file to canonical JSON Lines.",
        discussion: """
            Prints one JSON object per record, in file order. A rejected record \
            prints {"error":CODE,"detail":TEXT} in its place, and the exit status \
            stays 0: only a missing or unreadable file or bad arguments fail.
            With --count, everything is decoded and validated but only one summary \
            line is printed: {"records":N,"valid":V,"rejected":R,"by_error":{...}}.
            """
    )

    @Option(name: .customLong("dict-dir"), help: ArgumentHelp("Directory of zstd dictionaries (*.dict).", valueName: "DIR"))
    var dictionaryDirectory: String?

    @Flag(help: "Print only a summary line of counts.")
    var count = false

    @Argument(help: ArgumentHelp("Capture file, or - for standard input.", valueName: "FILE|-"))
    var file: String = "-"

    func run() throws {
        let dictionaries = try dictionaryDirectory.map { try ZstdDictionaries(directory: $0) } ?? .none
        let reader = try CaptureReader(path: file)
        let decoder = RecordDecoder(dictionaries: dictionaries)
        let output = StandardOutput()
        var json = CanonicalJSONWriter()
        var tally = DecodeTally()
        let progress = Progress(label: "decode", unit: "records")
        let countOnly = count  // read the option once, not per record

        while let record = try reader.next() {
            do {
                let decoded = try decoder.decode(record)
                tally.valid += 1
                if !countOnly { json.write(decoded) }
            } catch {
                tally.reject(error.code)
                if !countOnly { json.write(error) }
            }
            if json.bytes.count >= 1 << 20 {
                try output.write(json.bytes)
                json.reset()
            }
            if tally.records & 0xFFFF == 0 { progress.update(tally.records, bytes: reader.bytesRead) }
        }
        progress.finish(tally.records, bytes: reader.bytesRead)
        if count { json.bytes.append(contentsOf: tally.summaryJSON().utf8) }
        try output.write(json.bytes)
    }
}

/// Counts of a decode run, by outcome.
struct DecodeTally {
    var valid = 0
    var byError: [WireError.Code: Int] = [:]
    var rejected: Int { byError.values.reduce(0, +) }
    var records: Int { valid + rejected }

    mutating func reject(_ code: WireError.Code) { byError[code, default: 0] += 1 }

    /// `{"records":N,"valid":V,"rejected":R,"by_error":{"CODE":n,...}}`, codes in WIRE.md order.
    func summaryJSON() -> String {
        let errors = WireError.Code.allCases.compactMap { code in byError[code].map { "\"\(code.rawValue)\":\($0)" } }
        return "{\"records\":\(records),\"valid\":\(valid),\"rejected\":\(rejected),\"by_error\":{\(errors.joined(separator: ","))}}\n"
    }
}
