package store

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vigilhq/vigil"
	"github.com/vigilhq/vigil/schema"
)

// ErrType is wrapped (with vigil.ErrInvalid) by Coerce for a value that
// does not fit its column.
var ErrType = errors.New("value of the wrong type")

// Coerce converts an event field value to the Go type a column of type typ
// holds (string, int64, float64, bool, time.Time in UTC, or nil): integers
// of any size, integral floats and decimal strings for BIGINT, and so on.
// A value that does not fit is an error wrapping ErrType and
// vigil.ErrInvalid. Backends use it to validate batches the same way.
func Coerce(typ schema.Type, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	bad := func() (any, error) {
		return nil, fmt.Errorf("%T for %s: %w: %w", v, typ, ErrType, vigil.ErrInvalid)
	}
	switch typ {
	// A value already of the column's type is returned as the same
	// interface: re-boxing it would allocate, once per column per row.
	case schema.Text:
		switch x := v.(type) {
		case string:
			return v, nil
		case []byte:
			return string(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case int:
			return strconv.Itoa(x), nil
		case bool:
			return strconv.FormatBool(x), nil
		}
	case schema.BigInt:
		switch x := v.(type) {
		case int64:
			return v, nil
		case int:
			return int64(x), nil
		case int32:
			return int64(x), nil
		case uint32:
			return int64(x), nil
		case uint64:
			if x <= math.MaxInt64 {
				return int64(x), nil
			}
		case float64:
			if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
				return int64(x), nil
			}
		case string:
			if n, err := strconv.ParseInt(x, 10, 64); err == nil {
				return n, nil
			}
		}
	case schema.Double:
		switch x := v.(type) {
		case float64:
			return v, nil
		case float32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case int:
			return float64(x), nil
		case string:
			if f, err := strconv.ParseFloat(x, 64); err == nil {
				return f, nil
			}
		}
	case schema.Bool:
		switch x := v.(type) {
		case bool:
			return v, nil
		case string:
			if b, err := strconv.ParseBool(x); err == nil {
				return b, nil
			}
		}
	case schema.Timestamp:
		if x, ok := v.(time.Time); ok {
			if x.IsZero() {
				return nil, nil
			}
			return x.UTC(), nil
		}
	}
	return bad()
}
