import Testing
import TelematicsWire

/// Random messages of every kind, with extreme values mixed in.
struct MessageFactory {
    var rng: SeededGenerator

    mutating func pick<T>(_ values: [T]) -> T { values.randomElement(using: &rng)! }
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &rng) < p }

    mutating func uint32() -> UInt32 { chance(0.2) ? pick([0, 1, UInt32.max, 1000, 1001]) : UInt32.random(in: 0...UInt32.max, using: &rng) }
    mutating func int32() -> Int32 { chance(0.2) ? pick([0, -1, Int32.min, Int32.max]) : Int32.random(in: Int32.min...Int32.max, using: &rng) }
    mutating func int64() -> Int64 { chance(0.2) ? pick([0, -1, Int64.min, Int64.max]) : Int64.random(in: Int64.min...Int64.max, using: &rng) }
    mutating func permille() -> UInt32 { chance(0.2) ? pick([0, 1000]) : UInt32.random(in: 0...1000, using: &rng) }
    /// Enum numbers, sometimes ones the schema does not list (kept as numbers).
    mutating func enumeration<E: ProtoEnum>(_: E.Type = E.self) -> E {
        chance(0.1) ? E(rawValue: pick([-1, 77, Int32.max, Int32.min])) : E(rawValue: Int32.random(in: 0..<Int32(E.names.count), using: &rng))
    }
    mutating func position() -> Position? {
        guard chance(0.7) else { return nil }
        return Position(
            latE7: chance(0.2) ? pick([-900_000_000, 900_000_000, 0]) : Int32.random(in: -900_000_000...900_000_000, using: &rng),
            lonE7: chance(0.2) ? pick([-1_800_000_000, 1_800_000_000, 0]) : Int32.random(in: -1_800_000_000...1_800_000_000, using: &rng))
    }
    mutating func text() -> String {
        pick(["", "DK-1070", "hv-123456789", "ü✓ 🚗 \"quoted\" \\ back\nslash", String(repeating: "x", count: 300), "\u{0}\u{1F}"])
    }
    mutating func vin() -> VIN {
        let chars = Array("ABCDEFGHJKLMNPRSTUVWXYZ0123456789")
        return VIN(String((0..<17).map { _ in chars.randomElement(using: &rng)! }))!
    }

    mutating func body(_ kind: MessageKind, recordedAtMs: Int64) -> MessageBody {
        switch kind {
        case .teleserviceCall:
            var m = TeleserviceCall()
            m.trigger = enumeration()
            m.mileageKm = uint32()
            m.serviceItems = (0..<Int.random(in: 0...5, using: &rng)).map { _ in
                ServiceItem(type: enumeration(), status: enumeration(), dueInDays: int32(), dueInKm: int32())
            }
            m.checkControls = (0..<Int.random(in: 0...3, using: &rng)).map { _ in CheckControl(code: uint32(), severity: enumeration()) }
            m.battery12vMv = uint32()
            m.position = position()
            m.servicePartnerID = text()
            m.inWorkshop = chance(0.5)
            return .teleserviceCall(m)
        case .hvWarnCall:
            var m = HvWarnCall()
            m.eventID = text()
            m.thermal = enumeration()
            m.powertrain = enumeration()
            m.position = position()
            m.pluggedIn = chance(0.5)
            m.doorsOpen = chance(0.5)
            m.trunkOpen = chance(0.5)
            m.engineRunning = chance(0.5)
            m.ignitionOn = chance(0.5)
            m.vehicleState = enumeration()
            m.maxCellTempDc = int32()
            m.socPermille = permille()
            return .hvWarnCall(m)
        case .rttiProbe:
            var m = RttiProbe()
            let n = pick([0, 1, 2, 60, 500])
            var lat: Int64 = 0, lon: Int64 = 0
            for k in 0..<n {
                m.dtMs.append(int32())
                // Deltas chosen so every absolute point stays in range.
                let newLat = Int64.random(in: -900_000_000...900_000_000, using: &rng)
                let newLon = chance(0.5) ? Int64.random(in: -1_800_000_000...1_800_000_000, using: &rng) : lon
                let dLat = k == 0 ? newLat : newLat - lat
                let dLon = k == 0 ? newLon : newLon - lon
                if let a = Int32(exactly: dLat), let b = Int32(exactly: dLon) {
                    m.dlatE7.append(a); m.dlonE7.append(b)
                    lat = newLat; lon = newLon
                } else {
                    m.dlatE7.append(0); m.dlonE7.append(0)
                    if k == 0 { lat = 0; lon = 0 }
                }
                m.speedDkmh.append(uint32())
                m.headingDeg.append(chance(0.2) ? pick([0, 359]) : UInt32.random(in: 0...359, using: &rng))
            }
            if n > 0 {
                m.hazards = (0..<Int.random(in: 0...3, using: &rng)).map { _ in
                    Hazard(type: enumeration(), pointIndex: UInt32.random(in: 0..<UInt32(n), using: &rng))
                }
            }
            return .rttiProbe(m)
        case .chargeSession:
            var m = ChargeSession()
            m.sessionID = text()
            m.startedAtMs = int64()
            m.endedAtMs = int64()
            m.socStartPermille = permille()
            m.socEndPermille = permille()
            m.energyWh = uint32()
            m.maxPowerW = uint32()
            m.current = enumeration()
            m.site = enumeration()
            m.endReason = enumeration()
            m.position = position()
            return .chargeSession(m)
        case .consentState:
            return .consentState(ConsentState(
                teleservices: chance(0.5), smartMaintenance: chance(0.5), chargingHistory: chance(0.5),
                chargingLocation: chance(0.5), rtti: chance(0.5), accountDeleted: chance(0.5)))
        }
    }

    mutating func message(_ kind: MessageKind) -> TelematicsMessage {
        let t = chance(0.2) ? pick([Int64.min, Int64.max, -1, 0]) : Int64.random(in: 1_700_000_000_000...1_800_000_000_000, using: &rng)
        return TelematicsMessage(
            vin: vin(), sequence: chance(0.2) ? pick([0, UInt64.max]) : UInt64.random(in: 0...UInt64.max, using: &rng),
            recordedAtMs: t, body: body(kind, recordedAtMs: t))
    }
}

@Suite("Encoder and decoder round trips")
struct RoundTripTests {
    @Test("random messages of every kind survive encode then decode, plain and zstd, with and without a dictionary",
          arguments: MessageKind.allCases)
    func roundTrip(kind: MessageKind) throws {
        var factory = MessageFactory(rng: SeededGenerator(seed: 0xC0FFEE &+ UInt64(kind.rawValue)))
        let plain = try ZstdCompressor(level: 3)
        let withDictionary = try ZstdCompressor(level: 3, dictionary: try Fixtures.dictionaryBytes())
        let decoder = RecordDecoder(dictionaries: try Fixtures.dictionaries())
        for i in 0..<400 {
            let message = factory.message(kind)
            let compressor: ZstdCompressor? = [nil, plain, withDictionary][i % 3]
            let record = EnvelopeWriter.record(message, compressor: compressor)
            let decoded = try record.withUnsafeBytes { raw in try decoder.decode(raw).materialize() }
            #expect(decoded == message, "message \(i) of kind \(kind)")
        }
    }

    @Test("RTTI points come back absolute, including deltas whose sum needs more than 32 bits")
    func rttiAbsolutePoints() throws {
        let points = [
            RttiPoint(tMs: 1_000, latE7: 900_000_000, lonE7: -1_800_000_000, speedDkmh: 0, headingDeg: 0),
            RttiPoint(tMs: 2_000, latE7: -900_000_000, lonE7: 0, speedDkmh: 4_294_967_295, headingDeg: 359),
            RttiPoint(tMs: 3_000, latE7: -900_000_000, lonE7: 1_800_000_000, speedDkmh: 5, headingDeg: 1),
        ]
        let probe = try #require(RttiProbe(points: points, recordedAtMs: 500))
        let record = EnvelopeWriter.record(TelematicsMessage(vin: VIN("WMW11DJ0X02A00001")!, sequence: 1, recordedAtMs: 500, body: .rttiProbe(probe)))
        let decoded = try record.withUnsafeBytes { raw -> [RttiPoint] in
            guard case .rttiProbe(let view) = try RecordDecoder().decode(raw).body else { return [] }
            return Array(view.points)
        }
        #expect(decoded == points)
    }
}
