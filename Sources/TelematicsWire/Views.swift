// Validating, zero-copy views of the telematics.proto messages.
//
// Each view is made by one pass over the (decompressed) body that checks
// every rule of WIRE.md in the order the reference decoder does (syntax and
// wire types field by field, then ranges) and keeps the scalar fields.
// Strings stay in the buffer as `UTF8Text`; repeated fields are lazy
// sequences that walk the buffer again when iterated. Nothing allocates.
// A view is valid only while the buffer it reads is.

extension ProtoField {
    @inlinable
    func uint32(_ name: StaticString) throws(WireError) -> UInt32 {
        try require(WireType.varint, name)
        return UInt32(truncatingIfNeeded: value)
    }

    @inlinable
    func int64(_ name: StaticString) throws(WireError) -> Int64 {
        try require(WireType.varint, name)
        return Int64(bitPattern: value)
    }

    @inlinable
    func sint32(_ name: StaticString) throws(WireError) -> Int32 {
        try require(WireType.varint, name)
        return zigZag32(value)
    }

    @inlinable
    func bool(_ name: StaticString) throws(WireError) -> Bool {
        try require(WireType.varint, name)
        return value != 0
    }

    @inlinable
    func enumValue<E: ProtoEnum>(_ name: StaticString, as: E.Type = E.self) throws(WireError) -> E {
        try require(WireType.varint, name)
        return E(rawValue: Int32(truncatingIfNeeded: value))
    }

    /// A string field: length-delimited and valid UTF-8.
    @inlinable
    func text(in buffer: UnsafeRawBufferPointer, _ name: StaticString, field: StaticString) throws(WireError) -> UTF8Text {
        try require(WireType.lengthDelimited, name)
        guard isValidUTF8(buffer, start: start, end: end) else {
            throw WireError(.badField, .notUTF8(field: field))
        }
        return UTF8Text(UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
    }
}

/// A message that occurs inside another (repeated or singular).
public protocol EmbeddedMessage {
    /// Reads and validates one occurrence at `buffer[start..<end]`.
    static func read(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> Self
}

/// The occurrences of one repeated message field, decoded lazily.
public struct RepeatedMessages<Element: EmbeddedMessage>: Sequence {
    @usableFromInline let buffer: UnsafeRawBufferPointer
    @usableFromInline let number: UInt64

    @inlinable
    init(_ buffer: UnsafeRawBufferPointer, number: UInt64) {
        self.buffer = buffer
        self.number = number
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var fields: ProtoFieldReader
        @usableFromInline let number: UInt64

        @inlinable
        init(fields: ProtoFieldReader, number: UInt64) {
            self.fields = fields
            self.number = number
        }

        @inlinable
        public mutating func next() -> Element? {
            // The buffer was validated when the view was made: no error here.
            while let field = try? fields.next() {
                if field.number == number, field.wireType == WireType.lengthDelimited {
                    return try? Element.read(fields.buffer, start: field.start, end: field.end)
                }
            }
            return nil
        }
    }

    @inlinable
    public func makeIterator() -> Iterator {
        Iterator(fields: ProtoFieldReader(buffer), number: number)
    }
}

extension Position {
    /// Merges one occurrence of a `Position` field into `existing`, as
    /// protobuf merges a sub-message given more than once.
    @inlinable
    static func merge(_ existing: Position?, _ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> Position {
        var p = existing ?? Position(latE7: 0, lonE7: 0)
        var fields = ProtoFieldReader(buffer, start: start, end: end)
        while let f = try fields.next() {
            switch f.number {
            case 1: p.latE7 = try f.sint32("Position.lat_e7")
            case 2: p.lonE7 = try f.sint32("Position.lon_e7")
            default: break
            }
        }
        return p
    }

    /// Throws `bad_field` unless the position is inside the schema's ranges.
    @inlinable
    func validate() throws(WireError) {
        guard Position.latitudeRange.contains(Int64(latE7)) else {
            throw WireError(.badField, .outOfRange(field: "position.lat_e7", value: Int64(latE7)))
        }
        guard Position.longitudeRange.contains(Int64(lonE7)) else {
            throw WireError(.badField, .outOfRange(field: "position.lon_e7", value: Int64(lonE7)))
        }
    }
}

extension ProtoField {
    @inlinable
    func position(_ existing: Position?, in buffer: UnsafeRawBufferPointer, _ name: StaticString) throws(WireError) -> Position {
        try require(WireType.lengthDelimited, name)
        return try Position.merge(existing, buffer, start: start, end: end)
    }
}

extension ServiceItem: EmbeddedMessage {
    @inlinable
    public static func read(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> ServiceItem {
        var item = ServiceItem()
        var fields = ProtoFieldReader(buffer, start: start, end: end)
        while let f = try fields.next() {
            switch f.number {
            case 1: item.type = try f.enumValue("ServiceItem.type")
            case 2: item.status = try f.enumValue("ServiceItem.status")
            case 3: item.dueInDays = try f.sint32("ServiceItem.due_in_days")
            case 4: item.dueInKm = try f.sint32("ServiceItem.due_in_km")
            default: break
            }
        }
        return item
    }
}

extension CheckControl: EmbeddedMessage {
    @inlinable
    public static func read(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> CheckControl {
        var item = CheckControl()
        var fields = ProtoFieldReader(buffer, start: start, end: end)
        while let f = try fields.next() {
            switch f.number {
            case 1: item.code = try f.uint32("CheckControl.code")
            case 2: item.severity = try f.enumValue("CheckControl.severity")
            default: break
            }
        }
        return item
    }
}

extension Hazard: EmbeddedMessage {
    @inlinable
    public static func read(_ buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) -> Hazard {
        var item = Hazard()
        var fields = ProtoFieldReader(buffer, start: start, end: end)
        while let f = try fields.next() {
            switch f.number {
            case 1: item.type = try f.enumValue("Hazard.type")
            case 2: item.pointIndex = try f.uint32("Hazard.point_index")
            default: break
            }
        }
        return item
    }
}

/// Checks every occurrence of a repeated message field as the walk meets it.
@inlinable
func validateEmbedded<M: EmbeddedMessage>(_ field: ProtoField, in buffer: UnsafeRawBufferPointer, _ name: StaticString, as: M.Type) throws(WireError) {
    try field.require(WireType.lengthDelimited, name)
    _ = try M.read(buffer, start: field.start, end: field.end)
}

/// kind 1, read in place.
public struct TeleserviceCallView {
    /// The decompressed body.
    public let buffer: UnsafeRawBufferPointer
    public let trigger: Trigger
    public let mileageKm: UInt32
    public let battery12vMv: UInt32
    public let position: Position?
    public let servicePartnerID: UTF8Text
    public let inWorkshop: Bool

    /// Condition-based service items, decoded as iterated.
    @inlinable public var serviceItems: RepeatedMessages<ServiceItem> { RepeatedMessages(buffer, number: 3) }
    /// Active check-control messages, decoded as iterated.
    @inlinable public var checkControls: RepeatedMessages<CheckControl> { RepeatedMessages(buffer, number: 4) }

    /// Validates `buffer` as a `TeleserviceCall`.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer) throws(WireError) {
        var trigger = Trigger.unspecified
        var mileage: UInt32 = 0
        var battery: UInt32 = 0
        var position: Position?
        var partner = UTF8Text.empty
        var inWorkshop = false
        var fields = ProtoFieldReader(buffer)
        while let f = try fields.next() {
            switch f.number {
            case 1: trigger = try f.enumValue("TeleserviceCall.trigger")
            case 2: mileage = try f.uint32("TeleserviceCall.mileage_km")
            case 3: try validateEmbedded(f, in: buffer, "TeleserviceCall.service_items", as: ServiceItem.self)
            case 4: try validateEmbedded(f, in: buffer, "TeleserviceCall.check_controls", as: CheckControl.self)
            case 5: battery = try f.uint32("TeleserviceCall.battery_12v_mv")
            case 6: position = try f.position(position, in: buffer, "TeleserviceCall.position")
            case 7: partner = try f.text(in: buffer, "TeleserviceCall.service_partner_id", field: "service_partner_id")
            case 8: inWorkshop = try f.bool("TeleserviceCall.in_workshop")
            default: break
            }
        }
        try position?.validate()
        self.buffer = buffer
        self.trigger = trigger
        self.mileageKm = mileage
        self.battery12vMv = battery
        self.position = position
        self.servicePartnerID = partner
        self.inWorkshop = inWorkshop
    }

    /// An owned copy (allocates).
    public func materialize() -> TeleserviceCall {
        var m = TeleserviceCall()
        m.trigger = trigger
        m.mileageKm = mileageKm
        m.serviceItems = Array(serviceItems)
        m.checkControls = Array(checkControls)
        m.battery12vMv = battery12vMv
        m.position = position
        m.servicePartnerID = servicePartnerID.string
        m.inWorkshop = inWorkshop
        return m
    }
}

/// kind 2, read in place.
public struct HvWarnCallView {
    public let eventID: UTF8Text
    public let thermal: Thermal
    public let powertrain: Powertrain
    public let position: Position?
    public let pluggedIn: Bool
    public let doorsOpen: Bool
    public let trunkOpen: Bool
    public let engineRunning: Bool
    public let ignitionOn: Bool
    public let vehicleState: VehicleState
    public let maxCellTempDc: Int32
    public let socPermille: UInt32

    /// Validates `buffer` as an `HvWarnCall`.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer) throws(WireError) {
        var eventID = UTF8Text.empty
        var thermal = Thermal.unspecified
        var powertrain = Powertrain.unspecified
        var position: Position?
        var plugged = false, doors = false, trunk = false, engine = false, ignition = false
        var state = VehicleState.unspecified
        var temp: Int32 = 0
        var soc: UInt32 = 0
        var fields = ProtoFieldReader(buffer)
        while let f = try fields.next() {
            switch f.number {
            case 1: eventID = try f.text(in: buffer, "HvWarnCall.event_id", field: "event_id")
            case 2: thermal = try f.enumValue("HvWarnCall.thermal")
            case 3: powertrain = try f.enumValue("HvWarnCall.powertrain")
            case 4: position = try f.position(position, in: buffer, "HvWarnCall.position")
            case 5: plugged = try f.bool("HvWarnCall.plugged_in")
            case 6: doors = try f.bool("HvWarnCall.doors_open")
            case 7: trunk = try f.bool("HvWarnCall.trunk_open")
            case 8: engine = try f.bool("HvWarnCall.engine_running")
            case 9: ignition = try f.bool("HvWarnCall.ignition_on")
            case 10: state = try f.enumValue("HvWarnCall.vehicle_state")
            case 11: temp = try f.sint32("HvWarnCall.max_cell_temp_dc")
            case 12: soc = try f.uint32("HvWarnCall.soc_permille")
            default: break
            }
        }
        try position?.validate()
        guard soc <= 1000 else { throw WireError(.badField, .permilleOver1000(field: "soc_permille", value: soc)) }
        self.eventID = eventID
        self.thermal = thermal
        self.powertrain = powertrain
        self.position = position
        self.pluggedIn = plugged
        self.doorsOpen = doors
        self.trunkOpen = trunk
        self.engineRunning = engine
        self.ignitionOn = ignition
        self.vehicleState = state
        self.maxCellTempDc = temp
        self.socPermille = soc
    }

    /// An owned copy (allocates).
    public func materialize() -> HvWarnCall {
        var m = HvWarnCall()
        m.eventID = eventID.string
        m.thermal = thermal
        m.powertrain = powertrain
        m.position = position
        m.pluggedIn = pluggedIn
        m.doorsOpen = doorsOpen
        m.trunkOpen = trunkOpen
        m.engineRunning = engineRunning
        m.ignitionOn = ignitionOn
        m.vehicleState = vehicleState
        m.maxCellTempDc = maxCellTempDc
        m.socPermille = socPermille
        return m
    }
}

/// Where one RTTI column lies in the message, as the validating pass saw it.
@usableFromInline
struct ColumnRun {
    @usableFromInline var start = 0
    @usableFromInline var end = 0
    @usableFromInline var occurrences = 0
    @usableFromInline var packed = false

    @inlinable
    init() {}

    @inlinable @inline(__always)
    mutating func note(_ field: ProtoField) {
        if occurrences == 0 {
            start = field.start
            end = field.end
            packed = field.wireType == WireType.lengthDelimited
        }
        occurrences &+= 1
    }

    @inlinable
    var isSinglePackedRun: Bool { occurrences == 1 && packed }
}

/// One column of an RTTI probe: the values of one repeated scalar field,
/// packed runs and unpacked occurrences alike, in order.
@usableFromInline
struct ColumnCursor {
    @usableFromInline var fields: ProtoFieldReader
    @usableFromInline let number: UInt64
    @usableFromInline var run: PackedVarints

    /// A cursor over column `number`; when the validating pass saw the column
    /// as one packed run (the usual encoding), it starts on that run and never
    /// scans the message.
    @inlinable
    init(_ buffer: UnsafeRawBufferPointer, number: UInt64, layout: ColumnRun) {
        self.number = number
        if layout.isSinglePackedRun {
            fields = ProtoFieldReader(buffer, start: buffer.count, end: buffer.count)
            run = PackedVarints(buffer, start: layout.start, end: layout.end)
        } else {
            fields = ProtoFieldReader(buffer)
            run = PackedVarints(buffer, start: 0, end: 0)
        }
    }

    @inlinable
    mutating func next() -> UInt64 {
        if !run.isEmpty { return run.next() }
        while let f = try? fields.next() {
            guard f.number == number else { continue }
            if f.wireType == WireType.varint { return f.value }
            if f.wireType == WireType.lengthDelimited, f.start < f.end {
                run = PackedVarints(fields.buffer, start: f.start, end: f.end)
                return run.next()
            }
        }
        return 0  // unreachable after validation: the columns have `count` values
    }
}

/// The points of an RTTI probe as absolute values, computed as iterated
/// (positions accumulate in 64 bits: deltas may overflow 32).
public struct RttiPoints: Sequence {
    @usableFromInline let buffer: UnsafeRawBufferPointer
    @usableFromInline let recordedAtMs: Int64
    /// Number of points.
    public let count: Int

    @usableFromInline let layout: (ColumnRun, ColumnRun, ColumnRun, ColumnRun, ColumnRun)

    @inlinable
    init(_ buffer: UnsafeRawBufferPointer, recordedAtMs: Int64, count: Int,
         layout: (ColumnRun, ColumnRun, ColumnRun, ColumnRun, ColumnRun) = (.init(), .init(), .init(), .init(), .init())) {
        self.buffer = buffer
        self.recordedAtMs = recordedAtMs
        self.count = count
        self.layout = layout
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var dt, lat, lon, speed, heading: ColumnCursor
        @usableFromInline var remaining: Int
        @usableFromInline var first = true
        @usableFromInline var latE7: Int64 = 0
        @usableFromInline var lonE7: Int64 = 0
        @usableFromInline let recordedAtMs: Int64

        @inlinable
        init(_ points: RttiPoints) {
            dt = ColumnCursor(points.buffer, number: 1, layout: points.layout.0)
            lat = ColumnCursor(points.buffer, number: 2, layout: points.layout.1)
            lon = ColumnCursor(points.buffer, number: 3, layout: points.layout.2)
            speed = ColumnCursor(points.buffer, number: 4, layout: points.layout.3)
            heading = ColumnCursor(points.buffer, number: 5, layout: points.layout.4)
            remaining = points.count
            recordedAtMs = points.recordedAtMs
        }

        @inlinable
        public mutating func next() -> RttiPoint? {
            guard remaining > 0 else { return nil }
            remaining &-= 1
            let dtMs = zigZag32(dt.next())
            let dLat = Int64(zigZag32(lat.next()))
            let dLon = Int64(zigZag32(lon.next()))
            if first {
                latE7 = dLat
                lonE7 = dLon
                first = false
            } else {
                latE7 &+= dLat
                lonE7 &+= dLon
            }
            return RttiPoint(
                tMs: recordedAtMs &+ Int64(dtMs), latE7: latE7, lonE7: lonE7,
                speedDkmh: UInt32(truncatingIfNeeded: speed.next()),
                headingDeg: UInt32(truncatingIfNeeded: heading.next()))
        }
    }

    @inlinable
    public func makeIterator() -> Iterator { Iterator(self) }
}

/// A position column being validated: first value absolute, then deltas
/// (a running sum from 0 covers both), summed in 64 bits; notes whether any
/// point may have left `range`, with no branch per value.
///
/// The sum is kept as an interval `low...high`, exact (one value) while
/// every delta is decoded. A packed run whose deltas are all short
/// (``countShortVarints``) is not decoded: its n deltas move the sum by at
/// most n x 2^20, which widens the interval. Real tracks stay far inside
/// the range, so that proves every point in range without decoding it;
/// when it cannot, `outOfRange` is set and the exact walk after the field
/// walk decides (and names the first bad point, if any).
@usableFromInline
struct PositionColumn: VarintSink {
    @usableFromInline var count = 0
    @usableFromInline var low: Int64 = 0
    @usableFromInline var high: Int64 = 0
    /// Non-zero when a point may be out of range (certainly, if the
    /// interval is exact).
    @usableFromInline var outOfRange: UInt8 = 0
    @usableFromInline let lower: Int64
    @usableFromInline let span: UInt64

    @inlinable
    init(range: ClosedRange<Int64>) {
        lower = range.lowerBound
        span = UInt64(range.upperBound - range.lowerBound)
    }

    @inlinable @inline(__always)
    mutating func take(_ raw: UInt64) {
        let delta = Int64(zigZag32(raw))
        low &+= delta
        high &+= delta
        note()
        count &+= 1
    }

    @inlinable @inline(__always)
    mutating func note() {
        outOfRange |= (UInt64(bitPattern: low &- lower) > span ? 1 : 0) | (UInt64(bitPattern: high &- lower) > span ? 1 : 0)
    }

    /// Takes the packed run `start..<end`: bounded when its varints are all
    /// short (after the first point, which is absolute), else decoded.
    @inlinable @inline(__always)
    mutating func take(run buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) {
        var from = start
        if count == 0, end &- start >= 8, let first = decodeShortVarint(buffer, at: start) {
            take(first.value)
            from &+= first.length
        }
        if count > 0, let n = countShortVarints(buffer, start: from, end: end) {
            let reach = Int64(n) << 20  // |zig-zag of a varint of at most 3 bytes| <= 2^20
            low &-= reach
            high &+= reach
            note()
            count &+= n
            return
        }
        try forEachPackedVarint(buffer, start: from, end: end, into: &self)
    }
}

/// The heading column being validated: its count and largest value.
@usableFromInline
struct HeadingColumn: VarintSink {
    @usableFromInline var count = 0
    @usableFromInline var largest: UInt32 = 0

    @inlinable
    init() {}

    @inlinable @inline(__always)
    mutating func take(_ raw: UInt64) {
        largest = max(largest, UInt32(truncatingIfNeeded: raw))
        count &+= 1
    }

    /// Takes the packed run `start..<end`: counted without decoding when
    /// ``countHeadingVarints`` proves every value at most 359, else decoded.
    @inlinable @inline(__always)
    mutating func take(run buffer: UnsafeRawBufferPointer, start: Int, end: Int) throws(WireError) {
        if let n = countHeadingVarints(buffer, start: start, end: end) {
            count &+= n
            return
        }
        try forEachPackedVarint(buffer, start: start, end: end, into: &self)
    }
}

/// kind 3, read in place.
public struct RttiProbeView {
    /// The decompressed body.
    public let buffer: UnsafeRawBufferPointer
    /// The envelope's time, which point times are relative to.
    public let recordedAtMs: Int64
    /// The absolute points, computed as iterated.
    public let points: RttiPoints
    /// Hazards, decoded as iterated.
    @inlinable public var hazards: RepeatedMessages<Hazard> { RepeatedMessages(buffer, number: 6) }

    /// Validates `buffer` as an `RttiProbe` sent at `recordedAtMs`.
    ///
    /// One pass over the fields: syntax and wire types fail at once, as the
    /// walk meets them; the columns with range rules (positions, heading) are
    /// decoded on the way and their first failing point is remembered, to be
    /// reported only after the walk, as WIRE.md orders the checks. The other
    /// columns are only counted.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer, recordedAtMs: Int64) throws(WireError) {
        var dtCount = 0, speedCount = 0, hazardFields = 0
        var lat = PositionColumn(range: Position.latitudeRange)
        var lon = PositionColumn(range: Position.longitudeRange)
        var heading = HeadingColumn()
        var layout = (ColumnRun(), ColumnRun(), ColumnRun(), ColumnRun(), ColumnRun())
        var fields = ProtoFieldReader(buffer)
        while let f = try fields.next() {
            switch f.number {
            case 1...5:
                switch f.number {
                case 1: layout.0.note(f)
                case 2: layout.1.note(f)
                case 3: layout.2.note(f)
                case 4: layout.3.note(f)
                default: layout.4.note(f)
                }
                if f.wireType == WireType.varint {
                    switch f.number {
                    case 1: dtCount &+= 1
                    case 2: lat.take(f.value)
                    case 3: lon.take(f.value)
                    case 4: speedCount &+= 1
                    default: heading.take(f.value)
                    }
                } else if f.wireType == WireType.lengthDelimited {
                    switch f.number {
                    // Times and speeds are only counted: the common short
                    // varints without a branch per byte, others checked fully.
                    case 1: dtCount &+= try countVarints(buffer, start: f.start, end: f.end)
                    case 2: try lat.take(run: buffer, start: f.start, end: f.end)
                    case 3: try lon.take(run: buffer, start: f.start, end: f.end)
                    case 4: speedCount &+= try countVarints(buffer, start: f.start, end: f.end)
                    default: try heading.take(run: buffer, start: f.start, end: f.end)
                    }
                } else {
                    throw WireError(.badField, .wrongWireType(field: RttiProbeView.columnNames[Int(f.number) - 1], wireType: f.wireType))
                }
            case 6:
                try validateEmbedded(f, in: buffer, "RttiProbe.hazards", as: Hazard.self)
                hazardFields &+= 1
            default:
                continue
            }
        }
        let count = dtCount
        guard lat.count == count, lon.count == count, speedCount == count, heading.count == count else {
            throw WireError(.badField, .columnsDiffer(dt: dtCount, lat: lat.count, lon: lon.count, speed: speedCount, heading: heading.count))
        }
        let points = RttiPoints(buffer, recordedAtMs: recordedAtMs, count: count, layout: layout)
        if lat.outOfRange | lon.outOfRange != 0 || heading.largest > 359 {
            // Rare: walk the points in order to name the first bad one, checking
            // position before heading at each point as WIRE.md does.
            var index = 0
            for p in points {
                guard Position.latitudeRange.contains(p.latE7), Position.longitudeRange.contains(p.lonE7) else {
                    throw WireError(.badField, .pointOutOfRange(index: index, latE7: p.latE7, lonE7: p.lonE7))
                }
                guard p.headingDeg <= 359 else { throw WireError(.badField, .headingOver359(index: index, value: p.headingDeg)) }
                index &+= 1
            }
        }
        // Most probes carry no hazard: then no second walk looks for them.
        if hazardFields > 0 {
            var hazardIndex = 0
            for h in RepeatedMessages<Hazard>(buffer, number: 6) {
                guard UInt64(h.pointIndex) < UInt64(count) else {
                    throw WireError(.badField, .hazardPastLastPoint(hazard: hazardIndex, pointIndex: h.pointIndex, points: count))
                }
                hazardIndex &+= 1
            }
        }
        self.buffer = buffer
        self.recordedAtMs = recordedAtMs
        self.points = points
    }

    @usableFromInline
    static let columnNames: [StaticString] = [
        "RttiProbe.dt_ms", "RttiProbe.dlat_e7", "RttiProbe.dlon_e7", "RttiProbe.speed_dkmh", "RttiProbe.heading_deg",
    ]

    /// An owned copy in wire columns (allocates).
    public func materialize() -> RttiProbe {
        var m = RttiProbe()
        var previous: RttiPoint?
        for p in points {
            m.dtMs.append(Int32(truncatingIfNeeded: p.tMs &- recordedAtMs))
            m.dlatE7.append(Int32(truncatingIfNeeded: p.latE7 &- (previous?.latE7 ?? 0)))
            m.dlonE7.append(Int32(truncatingIfNeeded: p.lonE7 &- (previous?.lonE7 ?? 0)))
            m.speedDkmh.append(p.speedDkmh)
            m.headingDeg.append(p.headingDeg)
            previous = p
        }
        m.hazards = Array(hazards)
        return m
    }
}

/// kind 4, read in place.
public struct ChargeSessionView {
    public let sessionID: UTF8Text
    public let startedAtMs: Int64
    public let endedAtMs: Int64
    public let socStartPermille: UInt32
    public let socEndPermille: UInt32
    public let energyWh: UInt32
    public let maxPowerW: UInt32
    public let current: ChargingCurrent
    public let site: ChargingSite
    public let endReason: ChargeEndReason
    public let position: Position?

    /// Validates `buffer` as a `ChargeSession`.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer) throws(WireError) {
        var sessionID = UTF8Text.empty
        var started: Int64 = 0, ended: Int64 = 0
        var socStart: UInt32 = 0, socEnd: UInt32 = 0, energy: UInt32 = 0, power: UInt32 = 0
        var current = ChargingCurrent.unspecified
        var site = ChargingSite.unspecified
        var reason = ChargeEndReason.unspecified
        var position: Position?
        var fields = ProtoFieldReader(buffer)
        while let f = try fields.next() {
            switch f.number {
            case 1: sessionID = try f.text(in: buffer, "ChargeSession.session_id", field: "session_id")
            case 2: started = try f.int64("ChargeSession.started_at_ms")
            case 3: ended = try f.int64("ChargeSession.ended_at_ms")
            case 4: socStart = try f.uint32("ChargeSession.soc_start_permille")
            case 5: socEnd = try f.uint32("ChargeSession.soc_end_permille")
            case 6: energy = try f.uint32("ChargeSession.energy_wh")
            case 7: power = try f.uint32("ChargeSession.max_power_w")
            case 8: current = try f.enumValue("ChargeSession.current")
            case 9: site = try f.enumValue("ChargeSession.site")
            case 10: reason = try f.enumValue("ChargeSession.end_reason")
            case 11: position = try f.position(position, in: buffer, "ChargeSession.position")
            default: break
            }
        }
        try position?.validate()
        guard socStart <= 1000 else { throw WireError(.badField, .permilleOver1000(field: "soc_start_permille", value: socStart)) }
        guard socEnd <= 1000 else { throw WireError(.badField, .permilleOver1000(field: "soc_end_permille", value: socEnd)) }
        self.sessionID = sessionID
        self.startedAtMs = started
        self.endedAtMs = ended
        self.socStartPermille = socStart
        self.socEndPermille = socEnd
        self.energyWh = energy
        self.maxPowerW = power
        self.current = current
        self.site = site
        self.endReason = reason
        self.position = position
    }

    /// An owned copy (allocates).
    public func materialize() -> ChargeSession {
        var m = ChargeSession()
        m.sessionID = sessionID.string
        m.startedAtMs = startedAtMs
        m.endedAtMs = endedAtMs
        m.socStartPermille = socStartPermille
        m.socEndPermille = socEndPermille
        m.energyWh = energyWh
        m.maxPowerW = maxPowerW
        m.current = current
        m.site = site
        m.endReason = endReason
        m.position = position
        return m
    }
}

extension ConsentState {
    /// Validates `buffer` as a `ConsentState` and reads it.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer) throws(WireError) {
        self = .allOff
        var fields = ProtoFieldReader(buffer)
        while let f = try fields.next() {
            switch f.number {
            case 1: teleservices = try f.bool("ConsentState.teleservices")
            case 2: smartMaintenance = try f.bool("ConsentState.smart_maintenance")
            case 3: chargingHistory = try f.bool("ConsentState.charging_history")
            case 4: chargingLocation = try f.bool("ConsentState.charging_location")
            case 5: rtti = try f.bool("ConsentState.rtti")
            case 6: accountDeleted = try f.bool("ConsentState.account_deleted")
            default: break
            }
        }
    }
}

/// The body of a record, as a view of its kind.
public enum BodyView {
    case teleserviceCall(TeleserviceCallView)
    case hvWarnCall(HvWarnCallView)
    case rttiProbe(RttiProbeView)
    case chargeSession(ChargeSessionView)
    case consentState(ConsentState)

    /// Validates `buffer` as the body of a message of `kind`.
    @inlinable
    public init(validating buffer: UnsafeRawBufferPointer, kind: MessageKind, recordedAtMs: Int64) throws(WireError) {
        switch kind {
        case .teleserviceCall: self = .teleserviceCall(try TeleserviceCallView(validating: buffer))
        case .hvWarnCall: self = .hvWarnCall(try HvWarnCallView(validating: buffer))
        case .rttiProbe: self = .rttiProbe(try RttiProbeView(validating: buffer, recordedAtMs: recordedAtMs))
        case .chargeSession: self = .chargeSession(try ChargeSessionView(validating: buffer))
        case .consentState: self = .consentState(try ConsentState(validating: buffer))
        }
    }

    /// An owned copy (allocates).
    public func materialize() -> MessageBody {
        switch self {
        case .teleserviceCall(let v): .teleserviceCall(v.materialize())
        case .hvWarnCall(let v): .hvWarnCall(v.materialize())
        case .rttiProbe(let v): .rttiProbe(v.materialize())
        case .chargeSession(let v): .chargeSession(v.materialize())
        case .consentState(let v): .consentState(v)
        }
    }
}
