package table

import (
	"bytes"
	"encoding/binary"
)

// utmp records (struct utmp of glibc on 64-bit Linux, 384 bytes, little
// endian on the architectures we build for). logged_in_users reads
// /var/run/utmp, last reads /var/log/wtmp.

const utmpSize = 384

// utmp record types.
const (
	utEmpty        = 0
	utRunLvl       = 1
	utBootTime     = 2
	utNewTime      = 3
	utOldTime      = 4
	utInitProcess  = 5
	utLoginProcess = 6
	utUserProcess  = 7
	utDeadProcess  = 8
	utAccounting   = 9
)

type utmpRecord struct {
	typ        int16
	pid        int32
	line, user string
	host       string
	sec        int32
}

func parseUtmp(b []byte) []utmpRecord {
	var out []utmpRecord
	for ; len(b) >= utmpSize; b = b[utmpSize:] {
		r := b[:utmpSize]
		out = append(out, utmpRecord{
			typ:  int16(binary.LittleEndian.Uint16(r[0:2])),
			pid:  int32(binary.LittleEndian.Uint32(r[4:8])),
			line: cString(r[8:40]),
			user: cString(r[44:76]),
			host: cString(r[76:332]),
			sec:  int32(binary.LittleEndian.Uint32(r[340:344])),
		})
	}
	return out
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
