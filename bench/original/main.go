// Command original stands in, for measurement only, for the Go service diary
// started from: net/http, gorm (jinzhu/gorm v1, as Debian packages it) on
// PostgreSQL through lib/pq, photos uploaded to S3 under the client's filename.
//
// Its whole API: POST / (multipart `text` and an optional `file`) inserts a row
// and answers it as JSON; GET / answers every live row as a JSON array with
// gorm.Model's keys. No authentication, no pagination, no validation: the
// behaviour being measured, not one to copy. See README.md beside this file.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/s3/s3manager"
	"github.com/jinzhu/gorm"
	_ "github.com/jinzhu/gorm/dialects/postgres"
)

// Diary is one row; gorm.Model gives ID, CreatedAt, UpdatedAt and DeletedAt,
// which encoding/json writes under those names.
type Diary struct {
	gorm.Model
	Text string
	Img  string
}

// TableName keeps the bench's copy apart from diary's own tables.
func (Diary) TableName() string { return "original_entries" }

type server struct {
	db       *gorm.DB
	uploader *s3manager.Uploader
	bucket   string
}

func env(name, fallback string) string {
	if value, ok := os.LookupEnv(name); ok && value != "" {
		return value
	}
	return fallback
}

// dsn is lib/pq's key=value form from the original's DB_* variables.
func dsn() string {
	quote := func(value string) string {
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
	}
	parts := []string{
		"host=" + quote(env("DB_ENDPOINT", "127.0.0.1")),
		"port=" + quote(env("DB_PORT", "5432")),
		"user=" + quote(env("DB_USER", "postgres")),
		"dbname=" + quote(env("DB_NAME", "postgres")),
		"sslmode=" + quote(env("DB_SSLMODE", "disable")),
	}
	if password := os.Getenv("DB_PASSWORD"); password != "" {
		parts = append(parts, "password="+quote(password))
	}
	return strings.Join(parts, " ")
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodGet:
		s.list(w)
	case http.MethodPost:
		s.create(w, r)
	default:
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *server) list(w http.ResponseWriter) {
	var diaries []Diary
	if err := s.db.Find(&diaries).Error; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(diaries)
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	text := r.FormValue("text")
	img := ""
	file, header, err := r.FormFile("file")
	switch {
	case err == nil:
		defer file.Close()
		if s.uploader == nil {
			http.Error(w, "no BUCKET configured", http.StatusInternalServerError)
			return
		}
		// The client's filename is the key, as in the original: two photos
		// with one name overwrite each other.
		_, err = s.uploader.Upload(&s3manager.UploadInput{
			Bucket: aws.String(s.bucket),
			Key:    aws.String(header.Filename),
			Body:   file,
		})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		img = header.Filename
	case err != http.ErrMissingFile && err != http.ErrNotMultipart:
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	diary := Diary{Text: text, Img: img}
	if err := s.db.Create(&diary).Error; err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(diary)
}

func main() {
	db, err := gorm.Open("postgres", dsn())
	if err != nil {
		log.Fatalf("database: %v", err)
	}
	defer db.Close()
	if err := db.AutoMigrate(&Diary{}).Error; err != nil {
		log.Fatalf("migrate: %v", err)
	}
	s := &server{db: db, bucket: os.Getenv("BUCKET")}
	if s.bucket != "" {
		config := aws.NewConfig().WithRegion(env("AWS_REGION", "ap-northeast-1"))
		// Not in the original: the bench points it at moto's S3 server.
		if endpoint := os.Getenv("S3_ENDPOINT_URL"); endpoint != "" {
			config = config.WithEndpoint(endpoint).WithS3ForcePathStyle(true)
		}
		s.uploader = s3manager.NewUploader(session.Must(session.NewSession(config)))
	}
	address := fmt.Sprintf(":%s", env("PORT", "8080"))
	if host := os.Getenv("HOST"); host != "" {
		address = host + address
	}
	log.Printf("original service on %s", address)
	log.Fatal(http.ListenAndServe(address, s))
}
