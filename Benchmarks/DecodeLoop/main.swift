// decode-loop: our decoder timed the way Benchmarks/peers/zstd_ceiling.c
// times zstd, so the two (and the Python peer's own loop time) compare like
// for like: the capture is read into memory first, then one timed loop per
// pass walks the length-prefixed records and decodes each one completely
// (envelope, zstd, every WIRE.md check), single-threaded. Only the
// TelematicsWire library is needed, so the CI gate builds this small target
// in release instead of the whole `telematics` command.
//
//   decode-loop FILE.tmcap [--dict-dir DIR] [--repeat N] [--kind K]
//
// --kind (1-5 or a canonical name such as rtti_probe) decodes only that
// kind's records (the others are skipped before decoding), which is how
// Benchmarks/run.sh counts instructions per record and kind under
// callgrind (`--toggle-collect='*timedPass*'`).
//
// Prints {"records":N,"decoded":D,"valid":V,"rejected":R,"seconds":S,
// "records_per_second":X,"repeat":P}; seconds is the best pass, and
// records_per_second counts the records decoded (all of them without --kind).
import Foundation
import TelematicsWire

struct Options {
    var file = ""
    var dictionaryDirectory: String?
    var repeatCount = 1
    var kind: MessageKind?
}

func fail(_ message: String, status: Int32 = 2) -> Never {
    FileHandle.standardError.write(Data(("decode-loop: " + message + "\n").utf8))
    exit(status)
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    func value(_ flag: String) -> String {
        guard let v = arguments.popFirst() else { fail("\(flag) needs a value") }
        return v
    }
    while let argument = arguments.popFirst() {
        switch argument {
        case "--dict-dir": options.dictionaryDirectory = value(argument)
        case "--repeat":
            guard let n = Int(value(argument)), n >= 1 else { fail("--repeat needs a whole number >= 1") }
            options.repeatCount = n
        case "--kind":
            let k = value(argument)
            guard let kind = MessageKind.allCases.first(where: { "\($0.name)" == k || "\($0.rawValue)" == k }) else {
                fail("unknown --kind \(k): one of 1-5 or \(MessageKind.allCases.map { "\($0.name)" }.joined(separator: ", "))")
            }
            options.kind = kind
        case "-h", "--help":
            print("usage: decode-loop FILE.tmcap [--dict-dir DIR] [--repeat N] [--kind K]")
            exit(0)
        default:
            if argument.hasPrefix("-") || !options.file.isEmpty { fail("unexpected argument \(argument)") }
            options.file = argument
        }
    }
    if options.file.isEmpty { fail("usage: decode-loop FILE.tmcap [--dict-dir DIR] [--repeat N] [--kind K]") }
    return options
}

struct PassResult {
    var records = 0
    var decoded = 0
    var valid = 0
}

/// One pass over the capture in memory. Not inlined, so callgrind can collect
/// exactly this function (and what it calls) by name.
@inline(never)
func timedPass(_ data: UnsafeRawBufferPointer, _ decoder: RecordDecoder, kind: UInt8?) -> PassResult {
    var result = PassResult()
    var offset = 0
    while offset + 4 <= data.count {
        let length = Int(data.loadUnaligned(fromByteOffset: offset, as: UInt32.self).littleEndian)
        let start = offset + 4
        guard length <= data.count - start else {
            result.records += 1  // a cut-off record at the end of the file: rejected, as `decode --count` does
            break
        }
        offset = start + length
        result.records += 1
        let record = UnsafeRawBufferPointer(rebasing: data[start..<offset])
        if let kind, record.count < 4 || record[3] != kind { continue }
        result.decoded += 1
        if (try? decoder.decode(record)) != nil { result.valid += 1 }
    }
    return result
}

let options = parseOptions()
let dictionaries: ZstdDictionaries
do {
    dictionaries = try options.dictionaryDirectory.map { try ZstdDictionaries(directory: $0) } ?? .none
} catch {
    fail("\(error)", status: 1)
}
guard let contents = FileManager.default.contents(atPath: options.file) else {
    fail("cannot read \(options.file)", status: 1)
}
let decoder = RecordDecoder(dictionaries: dictionaries)
var best = Double.infinity
var last = PassResult()
contents.withUnsafeBytes { data in
    for _ in 0..<options.repeatCount {
        let start = DispatchTime.now().uptimeNanoseconds
        last = timedPass(data, decoder, kind: options.kind?.rawValue)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
}
let rate = best > 0 ? Double(last.decoded) / best : 0
print(
    "{\"records\":\(last.records),\"decoded\":\(last.decoded),\"valid\":\(last.valid),"
        + "\"rejected\":\(last.decoded - last.valid),\"seconds\":\(String(format: "%.6f", best)),"
        + "\"records_per_second\":\(String(format: "%.1f", rate)),\"repeat\":\(options.repeatCount)}")
