import CZstd

/// Appends protobuf fields to a byte array (the encoder; the simulator and
/// the tests use it, the hot path does not).
public struct ProtoWriter {
    /// The encoded bytes.
    public var bytes: [UInt8] = []

    public init() {}

    /// Appends a varint.
    public mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    /// Appends a field key.
    public mutating func key(_ number: UInt64, _ wireType: UInt8) {
        varint(number << 3 | UInt64(wireType))
    }

    /// A varint field, omitted when zero (proto3 default).
    public mutating func uint(_ number: UInt64, _ value: UInt64) {
        guard value != 0 else { return }
        key(number, WireType.varint)
        varint(value)
    }

    /// An `int32`/enum field: negative numbers take ten bytes, as in protobuf.
    public mutating func int32(_ number: UInt64, _ value: Int32) {
        uint(number, UInt64(bitPattern: Int64(value)))
    }

    public mutating func int64(_ number: UInt64, _ value: Int64) {
        uint(number, UInt64(bitPattern: value))
    }

    public mutating func sint32(_ number: UInt64, _ value: Int32) {
        uint(number, UInt64(zigZagEncode32(value)))
    }

    public mutating func bool(_ number: UInt64, _ value: Bool) {
        uint(number, value ? 1 : 0)
    }

    /// A length-delimited field with `payload`; written even when empty if
    /// `always` (sub-messages that are present but empty).
    public mutating func bytesField(_ number: UInt64, _ payload: some Collection<UInt8>, always: Bool = false) {
        guard always || !payload.isEmpty else { return }
        key(number, WireType.lengthDelimited)
        varint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    public mutating func string(_ number: UInt64, _ value: String) {
        bytesField(number, Array(value.utf8))
    }

    /// A sub-message field, present even when all its fields are default.
    public mutating func message(_ number: UInt64, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        bytesField(number, inner.bytes, always: true)
    }

    /// A packed repeated varint field.
    public mutating func packed(_ number: UInt64, _ values: some Sequence<UInt64>) {
        var inner = ProtoWriter()
        for v in values { inner.varint(v) }
        bytesField(number, inner.bytes)
    }
}

extension Position {
    func encode(into w: inout ProtoWriter, field: UInt64) {
        w.message(field) {
            $0.sint32(1, latE7)
            $0.sint32(2, lonE7)
        }
    }
}

extension MessageBody {
    /// The protobuf encoding of this body (uncompressed).
    public func encoded() -> [UInt8] {
        var w = ProtoWriter()
        switch self {
        case .teleserviceCall(let m):
            w.int32(1, m.trigger.rawValue)
            w.uint(2, UInt64(m.mileageKm))
            for item in m.serviceItems {
                w.message(3) {
                    $0.int32(1, item.type.rawValue)
                    $0.int32(2, item.status.rawValue)
                    $0.sint32(3, item.dueInDays)
                    $0.sint32(4, item.dueInKm)
                }
            }
            for cc in m.checkControls {
                w.message(4) {
                    $0.uint(1, UInt64(cc.code))
                    $0.int32(2, cc.severity.rawValue)
                }
            }
            w.uint(5, UInt64(m.battery12vMv))
            m.position?.encode(into: &w, field: 6)
            w.string(7, m.servicePartnerID)
            w.bool(8, m.inWorkshop)
        case .hvWarnCall(let m):
            w.string(1, m.eventID)
            w.int32(2, m.thermal.rawValue)
            w.int32(3, m.powertrain.rawValue)
            m.position?.encode(into: &w, field: 4)
            w.bool(5, m.pluggedIn)
            w.bool(6, m.doorsOpen)
            w.bool(7, m.trunkOpen)
            w.bool(8, m.engineRunning)
            w.bool(9, m.ignitionOn)
            w.int32(10, m.vehicleState.rawValue)
            w.sint32(11, m.maxCellTempDc)
            w.uint(12, UInt64(m.socPermille))
        case .rttiProbe(let m):
            w.packed(1, m.dtMs.lazy.map { UInt64(zigZagEncode32($0)) })
            w.packed(2, m.dlatE7.lazy.map { UInt64(zigZagEncode32($0)) })
            w.packed(3, m.dlonE7.lazy.map { UInt64(zigZagEncode32($0)) })
            w.packed(4, m.speedDkmh.lazy.map { UInt64($0) })
            w.packed(5, m.headingDeg.lazy.map { UInt64($0) })
            for h in m.hazards {
                w.message(6) {
                    $0.int32(1, h.type.rawValue)
                    $0.uint(2, UInt64(h.pointIndex))
                }
            }
        case .chargeSession(let m):
            w.string(1, m.sessionID)
            w.int64(2, m.startedAtMs)
            w.int64(3, m.endedAtMs)
            w.uint(4, UInt64(m.socStartPermille))
            w.uint(5, UInt64(m.socEndPermille))
            w.uint(6, UInt64(m.energyWh))
            w.uint(7, UInt64(m.maxPowerW))
            w.int32(8, m.current.rawValue)
            w.int32(9, m.site.rawValue)
            w.int32(10, m.endReason.rawValue)
            m.position?.encode(into: &w, field: 11)
        case .consentState(let m):
            w.bool(1, m.teleservices)
            w.bool(2, m.smartMaintenance)
            w.bool(3, m.chargingHistory)
            w.bool(4, m.chargingLocation)
            w.bool(5, m.rtti)
            w.bool(6, m.accountDeleted)
        }
        return w.bytes
    }
}

/// Compresses bodies into single zstd frames (with the content size in the
/// frame header), optionally with a dictionary. One per thread.
public final class ZstdCompressor {
    private let context: OpaquePointer
    private let dictionary: OpaquePointer?
    /// The id of the dictionary used, if any.
    public let dictionaryID: UInt32?

    /// A compressor at `level`, with the dictionary `dictionary` (raw bytes of
    /// a `.dict` file) when given.
    public init(level: Int32 = 3, dictionary: [UInt8]? = nil) throws(DictionaryError) {
        guard let context = ZSTD_createCCtx() else { fatalError("ZSTD_createCCtx: out of memory") }
        self.context = context
        if let dictionary {
            let id = try ZstdDictionaries.dictionaryID(dictionary, path: "dictionary")
            guard let cdict = dictionary.withUnsafeBytes({ ZSTD_createCDict($0.baseAddress, $0.count, level) }) else {
                ZSTD_freeCCtx(context)
                throw DictionaryError(path: "dictionary \(id)", problem: "zstd cannot load it")
            }
            self.dictionary = cdict
            self.dictionaryID = id
        } else {
            self.dictionary = nil
            self.dictionaryID = nil
            ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        }
    }

    deinit {
        ZSTD_freeCCtx(context)
        if let dictionary { ZSTD_freeCDict(dictionary) }
    }

    /// One zstd frame holding `body`.
    public func compress(_ body: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(body.count))
        let n = out.withUnsafeMutableBytes { dst in
            body.withUnsafeBytes { src in
                if let dictionary {
                    ZSTD_compress_usingCDict(context, dst.baseAddress, dst.count, src.baseAddress, src.count, dictionary)
                } else {
                    ZSTD_compress2(context, dst.baseAddress, dst.count, src.baseAddress, src.count)
                }
            }
        }
        precondition(ZSTD_isError(n) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(n)))")
        out.removeSubrange(n...)
        return out
    }
}

/// Writes envelopes (WIRE.md).
public enum EnvelopeWriter {
    /// The record value for `body` already encoded (and compressed when
    /// `compressed`): 48-byte header, then the body.
    public static func record(kind: UInt8, sequence: UInt64, recordedAtMs: Int64, vin: VIN, body: [UInt8], compressed: Bool) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Envelope.headerSize + body.count)
        out.append(0x54)
        out.append(0x4D)
        out.append(1)
        out.append(kind)
        out.append(compressed ? 1 : 0)
        out.append(contentsOf: [0, 0, 0])
        withUnsafeBytes(of: sequence.littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: recordedAtMs.littleEndian) { out.append(contentsOf: $0) }
        vin.withBytes { out.append(contentsOf: $0) }
        out.append(contentsOf: [0, 0, 0])
        withUnsafeBytes(of: UInt32(body.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: body)
        return out
    }

    /// The record value of `message`, its body compressed with `compressor`
    /// when one is given.
    public static func record(_ message: TelematicsMessage, compressor: ZstdCompressor? = nil) -> [UInt8] {
        var body = message.body.encoded()
        if let compressor { body = compressor.compress(body) }
        return record(
            kind: message.body.kind.rawValue, sequence: message.sequence, recordedAtMs: message.recordedAtMs,
            vin: message.vin, body: body, compressed: compressor != nil)
    }
}
