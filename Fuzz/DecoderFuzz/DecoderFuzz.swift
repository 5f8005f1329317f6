// libFuzzer target for the record decoder (Fuzz/run.sh builds it with
// `swiftc -sanitize=fuzzer,address` together with the TelematicsWire sources,
// in one module).
//
// Each input is one record value (envelope + body). The target:
// - decodes it with and without a Kafka key (the input's VIN bytes), with the
//   conformance vectors' zstd dictionaries loaded, so the dictionary path runs;
// - on success, writes its canonical JSON (which walks every field of the
//   views), materializes it, encodes the owned message again (plain, and
//   compressed) and decodes that: the canonical JSON of both must be equal,
//   or the target traps (a finding);
// - on rejection, renders the error's detail and JSON line.
// Crashes, traps and address-sanitizer reports are findings.

#if canImport(Glibc)
import Glibc
#endif

/// One decoder and writer for the whole run (libFuzzer calls the entry point
/// from one thread).
private final class FuzzState {
    let decoder: RecordDecoder
    let roundTripDecoder: RecordDecoder
    let compressor: ZstdCompressor
    var json = CanonicalJSONWriter()
    var roundTripJSON = CanonicalJSONWriter()

    init() {
        var dictionaries = ZstdDictionaries.none
        if let dir = getenv("FUZZ_DICT_DIR") {
            do { dictionaries = try ZstdDictionaries(directory: String(cString: dir)) } catch {
                fatalError("FUZZ_DICT_DIR: \(error)")
            }
        }
        decoder = RecordDecoder(dictionaries: dictionaries)
        roundTripDecoder = RecordDecoder(dictionaries: dictionaries)
        do { compressor = try ZstdCompressor(level: 1) } catch { fatalError("zstd compressor: \(error)") }
    }

    func run(_ record: UnsafeRawBufferPointer) {
        check(record, key: nil)
        // The same record as a Kafka record keyed by the bytes where its VIN is.
        if record.count >= Envelope.headerSize {
            check(record, key: UnsafeRawBufferPointer(rebasing: record[24..<41]))
        }
    }

    private func check(_ record: UnsafeRawBufferPointer, key: UnsafeRawBufferPointer?) {
        json.reset()
        let message: TelematicsMessage
        do {
            let decoded = try decoder.decode(record, key: key)
            json.write(decoded)
            message = decoded.materialize()
        } catch {
            json.write(error)
            precondition(!error.detail.isEmpty, "a rejection without detail")
            return
        }
        // Round trip: encoding the owned message and decoding it gives the same record.
        for compressor in [nil, compressor] {
            let again = EnvelopeWriter.record(message, compressor: compressor)
            roundTripJSON.reset()
            again.withUnsafeBytes { bytes in
                do {
                    roundTripJSON.write(try roundTripDecoder.decode(bytes))
                } catch {
                    fatalError("re-encoded record rejected: \(error) (original: \(String(decoding: json.bytes, as: UTF8.self)))")
                }
            }
            if roundTripJSON.bytes != json.bytes {
                fatalError("""
                    round trip differs:
                    original:   \(String(decoding: json.bytes, as: UTF8.self))
                    re-encoded: \(String(decoding: roundTripJSON.bytes, as: UTF8.self))
                    """)
            }
        }
    }
}

nonisolated(unsafe) private var state: FuzzState?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let fuzz: FuzzState
    if let s = state { fuzz = s } else { fuzz = FuzzState(); state = fuzz }
    // libFuzzer may pass a null pointer for an empty input.
    let record = size == 0 ? UnsafeRawBufferPointer(start: nil, count: 0) : UnsafeRawBufferPointer(start: data, count: size)
    fuzz.run(record)
    return 0
}
