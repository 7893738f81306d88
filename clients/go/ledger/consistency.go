package ledger

import (
	"encoding/base64"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// Consistency tokens are opaque to callers, but a session must carry *every* write it made into
// its reads: a token names the positions of one command's events, per partition, so the last
// command's token alone would not cover an earlier command on another partition. The servers'
// format (ledger/consistency.py) is "v1." + unpadded base64url of "partition:offset,..."; a
// session merges tokens of that format (the latest offset per partition) and, for a token it
// cannot read, keeps the newest one, which is what a client without this knowledge would do.

const tokenPrefix = "v1."

var tokenPositions = regexp.MustCompile(`^[0-9]{1,10}:[0-9]{1,19}(?:,[0-9]{1,10}:[0-9]{1,19})*$`)

func positions(token string) (map[uint64]uint64, bool) {
	body, found := strings.CutPrefix(token, tokenPrefix)
	if !found {
		return nil, false
	}
	raw, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return nil, false
	}
	result := map[uint64]uint64{}
	if len(raw) == 0 {
		return result, true
	}
	if !tokenPositions.Match(raw) {
		return nil, false
	}
	for _, pair := range strings.Split(string(raw), ",") {
		partitionText, offsetText, _ := strings.Cut(pair, ":")
		partition, errP := strconv.ParseUint(partitionText, 10, 64)
		offset, errO := strconv.ParseUint(offsetText, 10, 64)
		if errP != nil || errO != nil {
			return nil, false
		}
		result[partition] = offset
	}
	return result, true
}

func encodeToken(merged map[uint64]uint64) string {
	partitions := make([]uint64, 0, len(merged))
	for partition := range merged {
		partitions = append(partitions, partition)
	}
	sort.Slice(partitions, func(i, j int) bool { return partitions[i] < partitions[j] })
	pairs := make([]string, len(partitions))
	for i, partition := range partitions {
		pairs[i] = fmt.Sprintf("%d:%d", partition, merged[partition])
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(strings.Join(pairs, ",")))
}

// MergeTokens returns a token covered exactly when both older and newer are: newer if either is
// not in the format this client knows, and the other one if either is empty.
func MergeTokens(older, newer string) string {
	if older == "" || older == newer {
		return newer
	}
	if newer == "" {
		return older
	}
	a, okA := positions(older)
	b, okB := positions(newer)
	if !okA || !okB {
		return newer
	}
	for partition, offset := range b {
		if known, seen := a[partition]; !seen || known < offset {
			a[partition] = offset
		}
	}
	return encodeToken(a)
}
