package webhooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MessageID is the webhook-id of a delivery: msg_ and the delivery's id in
// hex. It is the receiver's deduplication key, the same on every attempt.
func MessageID(delivery uuid.UUID) string {
	return "msg_" + strings.ReplaceAll(delivery.String(), "-", "")
}

// Sign returns the webhook-signature header for one attempt: "v1," and the
// base64 HMAC-SHA256 of id.timestamp.body under each secret, space-separated
// (two during a rotation window). It returns an error for a malformed secret.
func Sign(secrets []string, id string, ts time.Time, body []byte) (string, error) {
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := secretKey(s)
		if err != nil {
			return "", fmt.Errorf("webhook secret: %w", err)
		}
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(id))
		mac.Write([]byte{'.'})
		mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
		mac.Write([]byte{'.'})
		mac.Write(body)
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(parts, " "), nil
}
